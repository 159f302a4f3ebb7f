"""Recompile KoSIT's XRechnung UBL Schematron to XSLT with SchXslt (run by hand when a new release is vendored).

Usage: python compile.py SCHXSLT_DIR  (SCHXSLT_DIR = SchXslt's core/src/main/resources/xslt/2.0 of v1.10)
The UBL schema includes ../common.sch: both are vendored with their layout.
"""

import sys
from pathlib import Path

from saxonche import PySaxonProcessor

here = Path(__file__).parent
processor = PySaxonProcessor(license=False)
pipeline = processor.new_xslt30_processor().compile_stylesheet(
    stylesheet_file=str(Path(sys.argv[1]) / "pipeline-for-svrl.xsl")
)
schema = processor.parse_xml(xml_file_name=str(here / "ubl" / "XRechnung-UBL-validation.sch"))
(here / "XRechnung-UBL-validation.xslt").write_text(pipeline.transform_to_string(xdm_node=schema), encoding="utf-8")
