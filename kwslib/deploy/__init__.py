"""Deployment: everything a device runs, with no torch, scipy or training code.

- ``export``     the ``.kws`` artifact (format, writing, reading, C header) and its operating point
- ``engine``     the integer network in numpy (the specification the C kernels match)
- ``detection``  the decision rule: posterior smoothing, threshold, lockout
- ``ckernels``   building and calling the C kernels (``csrc/``) with ctypes; ``qemu``: aarch64 NEON under qemu
- ``pipeline``   the whole streaming detector, PCM in, detections out (numpy specification and C)
"""
