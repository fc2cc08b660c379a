"""How a fax is rendered: paper, resolution, grey handling and the limits of one render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Paper sizes in PostScript points: the page an image attachment is fitted on.
PAGE_POINTS = {"a4": (595.0, 842.0), "letter": (612.0, 792.0)}


@dataclass(frozen=True)
class RenderOptions:
    paper: Literal["a4", "letter"] = "a4"
    resolution: Literal["fine", "standard"] = "fine"  # 204x196 / 204x98
    # Grey handling. adaptive: each page's own paper and ink levels (binarise.py) where there
    # are images, one threshold between paper and ink for vector pages; otherwise a fixed
    # transfer turning grey at or above whiten_threshold white, at or below blacken_threshold
    # black. Both thresholds None: no grey handling (the device's screen).
    adaptive: bool = True
    whiten_threshold: float | None = 0.8  # transfer turning light grey to white; None = off
    blacken_threshold: float | None = 0.3  # and dark grey to black; None = off
    photo: bool = False  # error diffusion (tiffscaled) instead of the fax device's screen
    max_pages: int = 50
    timeout_base_s: float = 20.0
    timeout_per_page_s: float = 5.0
    office_timeout_s: float = 60.0  # one LibreOffice conversion (office.py)
    cpu_limit_s: int = 300
    memory_limit_bytes: int = 2 * 1024**3

    @property
    def y_dpi(self) -> int:
        """Rows per inch: fine 196, standard 98 (204 dots per inch across, always)."""
        return 196 if self.resolution == "fine" else 98

    @property
    def grey_pages(self) -> bool:
        """Adaptive grey handling: gs renders grey pages for binarise.py when a document has
        raster images, else fax bits with one threshold (renderer.py decides per fax)."""
        grey_handling = self.whiten_threshold is not None or self.blacken_threshold is not None
        return self.adaptive and grey_handling and not self.photo

    def __post_init__(self) -> None:
        # Literal types are not checked at run time, and these values come from the admin's YAML
        if self.paper not in PAGE_POINTS or self.resolution not in ("fine", "standard"):
            raise ValueError(f"unknown paper {self.paper!r} or resolution {self.resolution!r}")
        if self.whiten_threshold is not None and not 0.0 < self.whiten_threshold <= 1.0:
            raise ValueError("whiten_threshold must be in (0, 1] or None")
        if self.blacken_threshold is not None and not (
            0.0 <= self.blacken_threshold < (self.whiten_threshold or 1.0)
        ):
            raise ValueError("blacken_threshold must be in [0, whiten_threshold) or None")
        if self.max_pages < 1 or self.cpu_limit_s < 1 or self.memory_limit_bytes < 1:
            raise ValueError("max_pages, cpu_limit_s and memory_limit_bytes must be positive")
        if self.timeout_base_s <= 0 or self.timeout_per_page_s < 0 or self.office_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
