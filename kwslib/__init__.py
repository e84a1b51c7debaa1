"""kwslib: sub-8-bit quantization of a streaming keyword-spotting model.

A reproduction of Zeng et al., "Sub 8-Bit Quantization of Streaming Keyword
Spotting Models for Embedded Chipsets" (2022). Modules:

- ``kwslib.data``      corpora (synthetic espeak-ng, Speech Commands, HF hub), one record schema
- ``kwslib.features``  log-mel front end (torch batched and numpy streaming, same numbers)
- ``kwslib.model``     streaming state-free feedforward KWS model
- ``kwslib.train``     seeded training loop with atomic checkpoints
- ``kwslib.metrics``   accuracy, detection, DET curves, bootstrap CIs
- ``kwslib.engine``    integer inference (numpy spec, C kernels); ``kwslib.pipeline`` the whole
                       streaming detector (numpy spec and C); ``kwslib.export`` the artifact
- ``kwslib.cli``       ``kwslib detect / export / say / bench``

The inference path (engine, pipeline, export, cli detect/export) imports no torch, scipy or datasets.
"""

__version__ = "0.1.0"
