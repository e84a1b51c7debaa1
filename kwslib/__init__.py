"""kwslib: sub-8-bit quantization of a streaming keyword-spotting model.

A reproduction of Zeng et al., "Sub 8-Bit Quantization of Streaming Keyword
Spotting Models for Embedded Chipsets" (2022). The subpackages follow the pipeline,
and imports run one way, down this list (tests/test_layout.py checks it):

- ``kwslib.errors``, ``io``, ``config``, ``progress``, ``summary``  the basics every part uses
- ``kwslib.frontend``    audio, the log-mel front end, its integer specification, streaming windows
- ``kwslib.data``        corpora (synthetic espeak-ng, Speech Commands, HF hub), negatives, test streams
- ``kwslib.model``       the streaming, state-free feedforward model
- ``kwslib.train``       the seeded training loop, data-parallel training
- ``kwslib.quant``       stage-1 weight QAT, stage-2 linear QAT, the integer specification
- ``kwslib.deploy``      the artifact, the integer engine, the C kernels, the whole streaming detector
- ``kwslib.evaluation``  measures, the evaluation protocol, statistics
- ``kwslib.study``       notebook glue, replicates and verdicts, reports, benchmarks, ``make reproduce``
- ``kwslib.cli``         ``kwslib detect / export / say / bench``

The inference path (frontend, deploy, cli detect/export) imports no torch, scipy, datasets or training code.
"""

__version__ = "0.1.0"
