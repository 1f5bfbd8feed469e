"""Reads a bdia hit lake with DuckDB and prints a few aggregates.

Usage: python3 duckdb_check.py LAKE_DIR COMPANY
Prints `hits=N page_views=M` for the company's hits and checks the contract
columns and types (the partition columns `company`, `report_suite` and
`date` included). A part holds only the columns with a value in some of
its file's rows, so the parts are read by column name (`union_by_name`).
"""
import sys

import duckdb

root, company = sys.argv[1], sys.argv[2]
glob = f"{root}/hits/**/*.parquet"
con = duckdb.connect()
everything = f"read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
# Report suite IDs are per company: always filter on the company partition.
rel = f"(SELECT * FROM {everything} WHERE company = '{company}')"

cols = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {everything}").fetchall()}
for name in [
    "report_suite", "hit_time", "visitor_id", "visitor_id_type", "visit_num",
    "visit_page_num", "visit_start_time", "new_visit", "hit_type", "page_name",
    "page_url", "link_name", "link_url", "events", "file_id", "row_number",
    "eVar1", "eVar250", "prop75", "hier2", "list3", "context_data",
    "customer_ids", "hints", "date", "company",
]:
    assert name in cols, f"missing column {name}: {sorted(cols)}"
assert cols["hit_time"].startswith("TIMESTAMP WITH TIME ZONE"), cols["hit_time"]
assert cols["events"].startswith("STRUCT(") and cols["events"].endswith("[]"), cols["events"]
assert cols["context_data"].startswith("MAP("), cols["context_data"]
assert cols["customer_ids"].startswith("MAP("), cols["customer_ids"]

hits, page_views = con.execute(
    f"SELECT count(*), count(*) FILTER (WHERE hit_type = 'page_view') FROM {rel}"
).fetchone()
visits = con.execute(
    f"SELECT count(*) FROM {rel} WHERE new_visit"
).fetchone()[0]
events = con.execute(
    f"SELECT count(*) FROM (SELECT unnest(events) AS e FROM {rel}) WHERE e.name = 'purchase'"
).fetchone()[0]
seeded = con.execute(
    f"SELECT count(*) FROM {rel} WHERE customer_ids['CRM'].auth_state = 'AUTHENTICATED'"
).fetchone()[0]
bad_dates = con.execute(
    f"SELECT count(*) FROM {rel} WHERE report_suite = 'rs1' "
    "AND strftime(timezone('UTC', hit_time), '%Y-%m-%d') <> CAST(date AS VARCHAR)"
).fetchone()[0]
assert bad_dates == 0, f"{bad_dates} rs1 hits outside their UTC day partition"
print(f"hits={hits} page_views={page_views} visits={visits} purchases={events} crm={seeded}")
