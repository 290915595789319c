"""`python -m trainpipe …` — the same as the `trainpipe` console script (and what torchrun runs)."""

from trainpipe.cli import main

if __name__ == "__main__":
    main()
