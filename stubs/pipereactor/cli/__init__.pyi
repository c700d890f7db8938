# The command-line runner (python -m pipereactor); its modules are private.

__all__ = ["main"]

def main(argv: list[str] | None = None) -> int: ...
