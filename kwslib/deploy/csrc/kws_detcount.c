/*
 * Evaluation helper (not part of the detector): false-detection counts of one score column for many
 * thresholds, the C form of kwslib.deploy.detection.count_detections_many (whose numpy code is the
 * specification; tests compare the two on random and constructed inputs).
 *
 * The detector fires at step t when scores[t] >= threshold and at least `gap` (>= 1) steps have passed
 * since it last fired; a detection at a step where false_at[t] is 0 (the true keyword is present) is
 * not counted but still starts a lockout. Scores and thresholds are compared in double precision, as
 * numpy compares a float64 score array with float64 thresholds. After a detection the scan jumps to
 * the first step the lockout allows, so a threshold that fires often costs T / gap steps, not T.
 */
#include <stdint.h>

int32_t kws_count_detections(const double *scores, int64_t n_steps, const double *thresholds, int64_t n_thresholds,
                             int64_t gap, const uint8_t *false_at, int64_t *counts) {
    if (!scores || !thresholds || !false_at || !counts || n_steps < 0 || n_thresholds < 0 || gap < 1) return -1;
    for (int64_t j = 0; j < n_thresholds; j++) {
        const double th = thresholds[j];
        int64_t c = 0;
        for (int64_t t = 0; t < n_steps; t++) {
            if (scores[t] >= th) {
                c += false_at[t] != 0;
                t += gap - 1; /* the loop's t++ lands on the first step the lockout allows */
            }
        }
        counts[j] = c;
    }
    return 0;
}
