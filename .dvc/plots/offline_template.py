"""Write the HTML template `dvc plots show` uses (.dvc/config: plots.html_template): DVC's page
with Vega, Vega-Lite and vega-embed inlined instead of loaded from a CDN, so the plots render
offline. The scripts are the copies Snakemake ships for its own reports (same major versions as
DVC's CDN links); `make install` runs this. Usage: python offline_template.py OUT.html"""
from __future__ import annotations

import sys
from pathlib import Path

from snakemake.assets import Assets

SCRIPTS = ("vega/vega.js", "vega-lite/vega-lite.js", "vega-embed/vega-embed.js")
# dvc_render fills {plot_divs} (and {refresh_tag}); without {scripts} it adds no CDN links.
PAGE = """<!DOCTYPE html>
<html>
<head>
{refresh_tag}
<meta charset="utf-8">
<title>DVC Plot</title>
%s
<style>table { border-spacing: 15px; }</style>
</head>
<body>
{plot_divs}
</body>
</html>
"""


def main(out: Path) -> None:
    scripts = "\n".join(f"<!-- {name} {Assets.get_version(name)} (BSD-3-Clause) -->\n"
                        f"<script>\n{Assets.get_content(name)}\n</script>" for name in SCRIPTS)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(PAGE % scripts, encoding="utf-8")
    tmp.replace(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
