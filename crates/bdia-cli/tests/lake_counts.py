"""Counts a company's Delta hit table with Python `deltalake` (delta-rs),
independently of bdia: what any engine reading the table's current
snapshot sees.

Usage: python3 lake_counts.py LAKE_DIR COMPANY

Prints one JSON object:
  rows         hits in the snapshot
  page_views   hits whose hit_type is page_view
  files        data files of the snapshot (add actions)
  version      the table version
  hits_by_visitor  {visitor_id: hits}
  visits       {visitor_id: {file_id: [[visit_num, new_visit], ...]}} in row order
"""
import json
import os
import sys

from deltalake import DeltaTable

root, company = sys.argv[1], sys.argv[2]
dt = DeltaTable(f"{root}/hits/company={company}")
table = dt.to_pyarrow_table(
    columns=["visitor_id", "hit_type", "file_id", "row_number", "visit_num", "new_visit"]
)
cols = {name: table.column(name).to_pylist() for name in table.schema.names}
hits_by_visitor = {}
visits = {}
rows = sorted(
    zip(cols["visitor_id"], cols["hit_type"], cols["file_id"], cols["row_number"],
        cols["visit_num"], cols["new_visit"]),
    key=lambda r: (r[2], r[3]),
)
for vid, _, file_id, _, visit_num, new_visit in rows:
    hits_by_visitor[vid] = hits_by_visitor.get(vid, 0) + 1
    visits.setdefault(vid, {}).setdefault(file_id, []).append([visit_num, new_visit])
actions = dt.get_add_actions(flatten=True)
print(json.dumps({
    "rows": table.num_rows,
    "page_views": sum(1 for t in cols["hit_type"] if t == "page_view"),
    "files": len(actions.column("path").to_pylist()),
    "version": dt.version(),
    "hits_by_visitor": hits_by_visitor,
    "visits": visits,
}))
# deltalake's native threads can abort the interpreter at exit on a loaded
# machine, after the work is done: flush and leave without exit handlers.
sys.stdout.flush()
os._exit(0)
