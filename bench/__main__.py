"""`python -m bench`: run the benchmark (see `bench.run`)."""

import os

# botocore picks its SigV4 signer when it is imported. The Lambda layer ships without awscrt
# (the SAM CLI pulls it into .venv), so sign in pure Python here too, as deployed.
os.environ.setdefault("BOTO_DISABLE_CRT", "true")


def _main() -> int:
    from bench.run import main

    return main()


if __name__ == "__main__":
    raise SystemExit(_main())
