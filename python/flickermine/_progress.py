"""The one progress bar of long work (decoding, detecting, mining, evaluating): tqdm on stderr.

``enabled=False`` gives tqdm's disabled bar, whose ``update`` and ``close`` do nothing, so callers
never test for a missing bar. It is a context manager: ``with progress_bar(...) as bar:`` closes it
whatever happens.
"""

from __future__ import annotations

from typing import Any, Optional


def progress_bar(total: Optional[int], desc: str, unit: str = "frame", enabled: bool = True, leave: bool = False,
                 **options: Any) -> Any:
    """A tqdm bar over ``total`` ``unit``s (None: a count without an end) labelled ``desc``;
    width follows the terminal; ``leave=False`` erases it when done (the caller prints a summary)."""
    from tqdm import tqdm  # imported when used: `import flickermine` stays quick

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=leave, disable=not enabled, **options)
