"""Recompile PEPPOL-EN16931-UBL.sch to XSLT with SchXslt (run by hand when a new Peppol release is vendored).

Usage: python compile.py SCHXSLT_DIR  (SCHXSLT_DIR = SchXslt's core/src/main/resources/xslt/2.0 of v1.10)
"""

import sys
from pathlib import Path

from saxonche import PySaxonProcessor

here = Path(__file__).parent
processor = PySaxonProcessor(license=False)
pipeline = processor.new_xslt30_processor().compile_stylesheet(
    stylesheet_file=str(Path(sys.argv[1]) / "pipeline-for-svrl.xsl")
)
schema = processor.parse_xml(xml_file_name=str(here / "PEPPOL-EN16931-UBL.sch"))
(here / "PEPPOL-EN16931-UBL.xslt").write_text(pipeline.transform_to_string(xdm_node=schema), encoding="utf-8")
