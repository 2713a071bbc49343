"""The QuickFIX data dictionary of the CME-style session: QuickFIX's FIX44.xml plus the CME market-data fields.

FIX 4.4 has no RptSeq (83) in market data and no AggressorSide (5797) at all; CME's FIX market data carries
both. The dictionary both sides load is the stock FIX44.xml with:
- field 5797 AggressorSide (INT) defined;
- RptSeq and AggressorSide added to the MDIncGrp (35=X) and MDFullGrp (35=W) entries;
- RptSeq added to the 35=W body (the instrument's newest RptSeq at snapshot time).
Building it needs no QuickFIX import (only the installed XML), so it is testable anywhere.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

STOCK_NAME = "FIX44.xml"
CME_NAME = "CME-FIX44.xml"


def stock_dictionary() -> Path:
    """QuickFIX's FIX44.xml as `pip install quickfix` installs it (sys.prefix/share/quickfix)."""
    path = Path(sys.prefix) / "share" / "quickfix" / STOCK_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: install the quickfix package (it ships the data dictionaries)")
    return path


def _component(root: ET.Element, name: str) -> ET.Element:
    comps = root.find("components")
    if comps is not None:
        for c in comps:
            if c.get("name") == name:
                return c
    raise ValueError(f"component {name} not in the dictionary")


def _add_once(parent: ET.Element, name: str) -> None:
    if not any(f.tag == "field" and f.get("name") == name for f in parent):
        ET.SubElement(parent, "field", {"name": name, "required": "N"})


def build_cme_dictionary(out_dir: str | Path, stock: str | Path | None = None) -> Path:
    """Write the CME dictionary into out_dir (idempotent); returns its path."""
    tree = ET.parse(stock if stock is not None else stock_dictionary())
    root = tree.getroot()
    fields = root.find("fields")
    if fields is None:
        raise ValueError("dictionary without <fields>")
    if not any(f.get("number") == "5797" for f in fields):
        ET.SubElement(fields, "field", {"number": "5797", "name": "AggressorSide", "type": "INT"})
    for comp in ("MDIncGrp", "MDFullGrp"):
        group = _component(root, comp).find("group")
        if group is None or group.get("name") != "NoMDEntries":
            raise ValueError(f"{comp} has no NoMDEntries group")
        _add_once(group, "RptSeq")
        _add_once(group, "AggressorSide")
    messages = root.find("messages")
    w = next((m for m in (messages if messages is not None else []) if m.get("msgtype") == "W"), None)
    if w is None:
        raise ValueError("dictionary without MarketDataSnapshotFullRefresh (W)")
    _add_once(w, "RptSeq")
    out = Path(out_dir) / CME_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    tree.write(out, encoding="utf-8", xml_declaration=True)
    return out
