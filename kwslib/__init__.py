"""kwslib: sub-8-bit quantization of a streaming keyword-spotting model.

A reproduction of Zeng et al., "Sub 8-Bit Quantization of Streaming Keyword
Spotting Models for Embedded Chipsets" (2022). Modules:

- ``kwslib.data``      corpora (synthetic espeak-ng, Speech Commands, HF hub), one record schema
- ``kwslib.features``  log-mel front end (torch batched and numpy streaming, same numbers)
- ``kwslib.model``     streaming state-free feedforward KWS model
- ``kwslib.train``     seeded training loop with atomic checkpoints
- ``kwslib.metrics``   accuracy, detection, DET curves, bootstrap CIs
"""

__version__ = "0.1.0"
