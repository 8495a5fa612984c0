/*
 * dtmm_kernels_isa.h - the ISA path every micro-kernel takes: exactly one of DTMM_ISA_MVE
 * (Helium), DTMM_ISA_DSP (SXTB16/SMLAD) or DTMM_ISA_PORTABLE (plain C).
 *
 * In an archive the choice is the archive's own: its generated dtmm_isa.h (next to this header)
 * defines the ISA its scratch sizes and schedules were computed for, and stops a compiler that
 * lacks it with an #error (dtmm_tvm/codegen/isa_guard.py). Taking the path from whatever
 * __ARM_FEATURE_* a build happens to have would run one path in scratch sized for another.
 * Outside an archive (the kernels' own tests) the compiler's features choose.
 */
#ifndef DTMM_KERNELS_ISA_H_
#define DTMM_KERNELS_ISA_H_

#if defined(__has_include)
#if __has_include("dtmm_isa.h")
#include "dtmm_isa.h"
#endif
#endif

#if !defined(DTMM_ISA_MVE) && !defined(DTMM_ISA_DSP) && !defined(DTMM_ISA_PORTABLE)
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define DTMM_ISA_MVE 1
#elif defined(__ARM_FEATURE_DSP) && (__ARM_FEATURE_DSP == 1)
#define DTMM_ISA_DSP 1
#else
#define DTMM_ISA_PORTABLE 1
#endif
#endif

#if (defined(DTMM_ISA_MVE) + defined(DTMM_ISA_DSP) + defined(DTMM_ISA_PORTABLE)) != 1
#error "dtmm: define exactly one of DTMM_ISA_MVE, DTMM_ISA_DSP, DTMM_ISA_PORTABLE"
#endif

#endif /* DTMM_KERNELS_ISA_H_ */
