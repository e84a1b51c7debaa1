"""Other inference runtimes run on the same integer networks, as comparison peers for the benchmark."""
