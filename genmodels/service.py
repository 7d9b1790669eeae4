"""The old name of the inference service, kept so existing command lines keep working:
``python -m genmodels.service ARGS`` says once on stderr where the service lives now and
runs ``python -m serving ARGS`` (same arguments, same exit status)."""
import sys

if __name__ == "__main__":
    print("python -m genmodels.service has moved to python -m serving; running that",
          file=sys.stderr)
    from serving.service import main

    sys.exit(main())
