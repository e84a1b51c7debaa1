"""Evaluation: the measures (``metrics``), the protocol on clips and streams (``evaluate``), statistics (``stats``)."""
