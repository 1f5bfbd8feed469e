"""DuckDB side of bench/reports.sh: the same two reports (rows and totals)
over exactly the Parquet files bdia read, timed the same way (one untimed
run, then the median of N), checked against bdia's totals, and the ratios
printed."""
import json
import statistics
import sys
import time

import duckdb

parts_file, iterations, bdia = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
files = [l for l in open(parts_file).read().splitlines() if l]
con = duckdb.connect()
# A view cannot take parameters: the file list is spliced in, quoted.
listing = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
# A part holds only the columns valued in its file: read by column name.
con.execute(f"CREATE VIEW hits AS SELECT * FROM read_parquet({listing}, hive_partitioning = true, union_by_name = true)")

DAILY = [
    """SELECT date,
              count(*) FILTER (WHERE hit_type = 'page_view') AS pageviews,
              count(*) FILTER (WHERE new_visit) AS visits,
              count(DISTINCT (visitor_id_type, visitor_id)) AS visitors
       FROM hits GROUP BY date ORDER BY date""",
    "SELECT count(DISTINCT (visitor_id_type, visitor_id)) FROM hits",
]
PAGES = [
    """SELECT CASE WHEN hit_type = 'page_view' THEN coalesce(page_name, page_url) END AS page,
              count(*) FILTER (WHERE hit_type = 'page_view') AS pageviews,
              count(DISTINCT (visitor_id_type, visitor_id, visit_num)) AS visits,
              count(DISTINCT (visitor_id_type, visitor_id)) AS visitors
       FROM hits GROUP BY page ORDER BY pageviews DESC, page LIMIT 100""",
    """SELECT count(*) FILTER (WHERE hit_type = 'page_view'),
              count(DISTINCT (visitor_id_type, visitor_id, visit_num)),
              count(DISTINCT (visitor_id_type, visitor_id)) FROM hits""",
]


def run(queries):
    return [con.execute(q).fetchall() for q in queries]


def timed(queries):
    first = run(queries)
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        run(queries)
        times.append(time.perf_counter() - t)
    return statistics.median(times), first


daily_s, daily = timed(DAILY)
pages_s, pages = timed(PAGES)

# Same answers as bdia.
dt = bdia["daily_totals"]
assert sum(r[1] for r in daily[0]) == dt["pageviews"], (daily[0], dt)
assert sum(r[2] for r in daily[0]) == dt["visits"], (daily[0], dt)
assert daily[1][0][0] == dt["visitors"], (daily[1], dt)
pt = bdia["top_pages_totals"]
assert list(pages[1][0]) == [pt["pageviews"], pt["visits"], pt["visitors"]], (pages[1], pt)

print(f"duckdb: {{\"daily_seconds\": {daily_s:.4f}, \"top_pages_seconds\": {pages_s:.4f}, "
      f"\"version\": \"{duckdb.__version__}\"}}")
print(f"hits: {bdia['hits']:,} in {bdia['parts']} parts")
print(f"daily report (pageviews, visits, visitors): bdia {bdia['daily_seconds']:.3f} s, "
      f"duckdb {daily_s:.3f} s, ratio bdia/duckdb {bdia['daily_seconds'] / daily_s:.2f}")
print(f"top-100 pages (pageviews, visits, visitors): bdia {bdia['top_pages_seconds']:.3f} s, "
      f"duckdb {pages_s:.3f} s, ratio bdia/duckdb {bdia['top_pages_seconds'] / pages_s:.2f}")
