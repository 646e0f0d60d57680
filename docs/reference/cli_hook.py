"""MkDocs hook: the CLI reference page is generated from the Typer app at build time
(``typer ... utils docs``), so it always shows the options the installed ``vocalis`` command has."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

#: the page whose body is replaced by the generated reference
CLI_PAGE = "reference/cli.md"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the body of the CLI page by the Markdown Typer generates for ``vocalis.cli:app``."""
    if page.file.src_uri != CLI_PAGE:
        return markdown
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "typer",
            "vocalis.cli",
            "utils",
            "docs",
            "--name",
            "vocalis",
            "--title",
            "CLI reference",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        # a strict build must fail rather than publish an empty reference
        raise RuntimeError(f"{CLI_PAGE}: typer utils docs failed: {result.stderr.strip()[-1000:]}")
    return result.stdout
