"""Documents to one fax TIFF: options, PDF and image checks, sandboxed Ghostscript, the TIFF
check."""
