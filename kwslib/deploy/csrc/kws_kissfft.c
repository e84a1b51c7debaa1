/*
 * KISS FFT (kissfft/, BSD-3-Clause), compiled as one unit of kwslib in double precision: the front end's
 * arithmetic is float64 (kws_frontend.h), whatever flags the build passes.
 */
#ifndef kiss_fft_scalar
#define kiss_fft_scalar double
#endif
#include "kissfft/kiss_fft.c"
#include "kissfft/kiss_fftr.c"
