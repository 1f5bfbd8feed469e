"""Reads a company's Delta hit table with Python `deltalake` (delta-rs).

Usage: python3 delta_check.py LAKE_DIR COMPANY APP_ID
Prints `hits=N version=V files=F txn=T` and one `suite=<rsid> hits=N`
line per report suite, from the table's current snapshot.
"""
import os
import sys

from deltalake import DeltaTable

root, company, app_id = sys.argv[1], sys.argv[2], sys.argv[3]
dt = DeltaTable(f"{root}/hits/company={company}")
assert dt.metadata().partition_columns == ["report_suite", "date"], dt.metadata()
table = dt.to_pyarrow_table()
schema = table.schema
for name in ["report_suite", "date", "hit_time", "visitor_id", "events", "eVar250", "customer_ids"]:
    assert name in schema.names, f"missing column {name}"
assert str(schema.field("date").type) == "date32[day]", schema.field("date").type
assert str(schema.field("hit_time").type).startswith("timestamp[us, tz="), schema.field("hit_time").type
files = len(dt.file_uris())
print(f"hits={table.num_rows} version={dt.version()} files={files} txn={dt.transaction_version(app_id)}")
by_suite = {}
for suite in table.column("report_suite").to_pylist():
    by_suite[suite] = by_suite.get(suite, 0) + 1
for suite in sorted(by_suite):
    print(f"suite={suite} hits={by_suite[suite]}")
# Statistics are in the log: a filter on time skips files.
actions = dt.get_add_actions(flatten=True)
names = actions.schema.names
assert "num_records" in names, names
if table.num_rows:
    assert "min.hit_time" in names and "max.hit_time" in names, names
assert sum(actions.column("num_records").to_pylist()) == table.num_rows
# deltalake's native threads can abort the interpreter at exit ("terminate
# called without an active exception") on a loaded machine, after the work
# is done: flush and leave without running the exit handlers.
sys.stdout.flush()
os._exit(0)
