"""Quantization: stage-1 weight quantizers, stage-2 linear fake quantization, the integer spec."""
