"""pre-commit hook: refuse files larger than 1 MB (data and models belong outside git)."""

import os
import sys

LIMIT_BYTES = 1024 * 1024


def main(paths: list[str]) -> int:
    too_large = [path for path in paths if os.path.getsize(path) > LIMIT_BYTES]
    for path in too_large:
        print(f"{path}: {os.path.getsize(path)} bytes (limit {LIMIT_BYTES})")
    return 1 if too_large else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
