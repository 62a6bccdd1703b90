"""Report: result tables, the DVC metric, and the study report with its plots."""
