"""`python -m llmrec`: the same command line as `llmrec`."""

if __name__ == "__main__":
    from llmrec.cli import main

    raise SystemExit(main())
