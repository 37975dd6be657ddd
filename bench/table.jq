# Prints bench/results/<date>.json as one Markdown table (aligned, so it reads in a terminal
# too), with the machine above it and the verdict below it.
def num(p): if . == null then "n/a" else (. * pow(10; p) | round) / pow(10; p) | tostring end;
def ms: if . == null then "n/a" else "\(num(1)) ms" end;
def yes(c): if c == null then "n/a" elif c then "met" else "MISSED" end;
def both(a; b): if a == null or b == null then "n/a" elif a and b then "met" else "MISSED" end;
def cores: "CPU: service \(.cpu.server_cores // "n/a"), postgres \(.cpu.postgres_cores // "n/a")\(if .client_cores then ", load generator \(.client_cores)" else "" end) cores; machine \(.cpu.machine_busy_pct // "n/a")% busy";
def pad(w): . + (" " * (w - length));

. as $j
| $j.ceilings.reference as $ref
| ($ref.missing // null) as $ref_missing
| def ref(k): if $ref_missing then null else $ref[k].tps end;
  def reg_notes: "\(.check.confirmed) confirmed / \(.check.waitlisted) waitlisted, oversold \(.check.oversold_sessions); CPU per registration: service \(.cpu.server_cpu_ms_per_request) ms, postgres \(.cpu.postgres_cpu_ms_per_request) ms; \(cores)";
[
  ["scenario", "req/s", "p50", "p99", "errors", "ceiling", "ratio", "target", "notes"],
  ($j.scenarios.hot | ["hot: \(.requests) regs -> 1 session (1000 seats), \($j.settings.clients) clients", (.rps | num(0)), (.p50_ms | ms), (.p99_ms | ms), (.errors | tostring),
     "seats/hot \(ref("seats_hot") | num(0))/s", (.ratio | num(2)),
     "ratio>=0.5 " + yes($j.targets.hot_ratio_at_least_0_5) + ", p99<50ms " + yes($j.targets.hot_p99_under_50_ms), reg_notes]),
  ($j.scenarios.spread | ["spread: \(.requests) regs -> 500 sessions, \($j.settings.clients) clients", (.rps | num(0)), (.p50_ms | ms), (.p99_ms | ms), (.errors | tostring),
     "seats/spread \(ref("seats_spread") | num(0))/s", (.ratio | num(2)),
     "ratio>=0.5 " + yes($j.targets.spread_ratio_at_least_0_5) + ", p99<50ms " + yes($j.targets.spread_p99_under_50_ms), reg_notes]),
  ($j.scenarios.queue_before | ["queue: \(.requests) regs join a waitlist of \(.waiting_before)", (.rps | num(0)), (.p50_ms | ms), (.p99_ms | ms), (.errors | tostring),
     "", "", "", "positions \(.positions.min)..\(.positions.max), each told once: \(.positions.distinct == .positions.told); CPU per registration: service \(.cpu.server_cpu_ms_per_request) ms, postgres \(.cpu.postgres_cpu_ms_per_request) ms; \(cores)"]),
  ($j.scenarios.queue_after | ["queue, after \(.left_before) left its middle: \(.requests) regs join \(.waiting_before)", (.rps | num(0)), (.p50_ms | ms), (.p99_ms | ms), (.errors | tostring),
     "queue before \($j.scenarios.queue_before.rps | num(0))/s", (.ratio | num(2)), "ratio>=0.8 " + yes($j.targets.queue_after_leavers_at_least_0_8_of_before),
     "positions \(.positions.min)..\(.positions.max), each told once: \(.positions.distinct == .positions.told); CPU per registration: service \(.cpu.server_cpu_ms_per_request) ms, postgres \(.cpu.postgres_cpu_ms_per_request) ms; \(cores)"]),
  ($j.scenarios.quiet | select(. != null) | ["hot again, at the end, notifications off", (.rps | num(0)), (.p50_ms | ms), (.p99_ms | ms), (.errors | tostring),
     "hot \($j.scenarios.hot.rps | num(0))/s", "", "", reg_notes]),
  ($j.scenarios.notify | ["hot again, with a webhook endpoint and email on", (.rps | num(0)), (.p50_ms | ms), (.p99_ms | ms), (.errors | tostring),
     "off \($j.scenarios.quiet.rps // 0 | num(0))/s", (.ratio | num(2)), "ratio>=0.9 " + yes($j.targets.notify_ratio_at_least_0_9), reg_notes]),
  ($j.scenarios.notify_delivery | ["  its webhooks and mails", "n/a", (.latency_p50_ms | ms), (.latency_p99_ms | ms), "n/a", "", "", "",
     (.missing // "webhooks \(.webhooks_arrived)/\(.webhooks_expected) arrived (change to arrival: p50 and p99 left, max \(.latency_max_ms) ms); mails \(.mails_arrived)/\(.mails_expected), \(.mails_per_second // "n/a") a second; all out \(.drained_seconds) s after the last registration")]),
  ($j.scenarios.programme | ["programme, 300 sessions: GET (200)", (.rps | num(0)), (.p50_ms | ms), (.p99_ms | ms), (.errors | tostring),
     "static \($j.ceilings.static_programme.rps | num(0))/s", (.ratio | num(2)), "ratio>=0.5 " + yes($j.targets.programme_ratio_at_least_0_5),
     "\((.body_bytes // 0) / 1024 | floor) KiB body; \(cores)"]),
  ($j.scenarios.programme_304 | ["programme, If-None-Match (304)", (.rps | num(0)), (.p50_ms | ms), (.p99_ms | ms), (.errors | tostring),
     "static \($j.ceilings.static_programme.rps | num(0))/s", (.ratio | num(2)), "faster than 200: " + yes($j.targets.programme_304_faster_than_200),
     cores]),
  ($j.scenarios.export | ["CSV export, \(.rows) attendees", "n/a", "n/a", "n/a", (if .status == "200" then "0" else "1" end),
     "COPY \($j.ceilings.copy.seconds | num(2)) s", (.ratio | num(2)),
     "time<=2x " + yes($j.targets.export_ratio_at_most_2) + ", RSS<100MB " + yes($j.targets.export_peak_rss_under_100_mb),
     "\(.seconds | num(2)) s (median of \(.runs_s | length)), \((.bytes // 0) / 1048576 | num(1)) MiB, peak RSS \(.peak_rss_mb) MB (idle \(.rss_before_mb) MB); \(cores)"]),
  ($j.scenarios.xlsx_export | select(. != null) | ["XLSX export, \(.rows) attendees", "n/a", "n/a", "n/a", (if .status == "200" then "0" else "1" end),
     "CSV export", (.ratio | num(2)), "",
     "\(.seconds | num(2)) s (median of \(.runs_s | length)), \((.bytes // 0) / 1048576 | num(1)) MiB, peak RSS \(.peak_rss_mb) MB (idle \(.rss_before_mb) MB); \(cores)"]),
  ($j.scenarios.badges_pdf | select(. != null) | ["badges PDF, \(.badges) on A4 sheets of 8", "\(.badges_per_s) badges/s", "n/a", "n/a", (if .status == "200" then "0" else "1" end),
     "", "", "",
     "\(.seconds | num(2)) s, \(.pages) pages, \((.bytes // 0) / 1048576 | num(1)) MiB, peak RSS \(.peak_rss_mb) MB; \(cores)"]),

  ($j.scenarios.import // empty | ["import, \(.rows) rows: dry run, then commit", "\(.commit_rows_per_s) rows/s", "n/a", "n/a", "n/a",
     "n/a", "n/a", "n/a", "dry run \(.dry_run_seconds | num(1)) s (peak RSS \(.dry_run_peak_rss_mb) MB), commit \(.commit_seconds | num(1)) s (peak RSS \(.commit_peak_rss_mb) MB); idle \(.rss_before_mb) MB"]),
  ($j.scenarios.feed | ["feed sync, \(.distinct // "n/a") attendees, 1000 a page", "\(.items_per_s | num(0)) att/s", (.p50_ms | ms), (.p99_ms | ms), (.errors | tostring),
     "n/a", "n/a", "n/a", "\(.pages // "n/a") pages in \(.seconds | num(1)) s; \(cores)"]),
  ($j.ceilings.service_sql_hot | ["pgbench: service's registration SQL, hot (\(.transactions // "n/a"))", (.tps | num(0)), (.p50_ms | ms), (.p99_ms | ms), "n/a",
     "seats/hot \(ref("seats_hot") | num(0))/s", (.ratio | num(2)), "", "oversold \(.oversold_sessions); machine \(.machine_busy_pct)% busy"]),
  ($j.ceilings.service_sql_spread | ["pgbench: service's registration SQL, spread (\(.transactions // "n/a"))", (.tps | num(0)), (.p50_ms | ms), (.p99_ms | ms), "n/a",
     "seats/spread \(ref("seats_spread") | num(0))/s", (.ratio | num(2)), "", "oversold \(.oversold_sessions); machine \(.machine_busy_pct)% busy"]),
  (["counter_hot", "counter_spread", "seats_hot", "seats_spread"][] as $k |
     ($j.ceilings.reference_latency[$k] // {}) as $lat |
     ["reference \($k | sub("_"; "/"))", (ref($k) | num(0)), ($lat.p50_ms | ms), ($lat.p99_ms | ms), "n/a", "", "",
      (if $lat.p99_ms then "p99<50ms " + yes($lat.p99_ms < 50) + " (database alone)" else "" end),
      (if $ref_missing then $ref_missing
       else "mean of \($ref[$k].tps_runs | map(num(0)) | join(" and ")) (runs differ by \($ref[$k].spread_pct // "n/a")%); oversold \($ref[$k].oversold_sessions)" end)]),
  ($j.ceilings.static_programme | ["nginx: the same programme bytes", (.rps | num(0)), (.p50_ms | ms), (.p99_ms | ms), (.errors // "n/a" | tostring), "", "", "",
     (.missing // "CPU: load generator \(.client_cores // "n/a") cores; machine \(.cpu.machine_busy_pct // "n/a")% busy")]),
  ($j.ceilings.copy | ["COPY of the export's query (psql)", "n/a", "n/a", "n/a", "n/a", "", "", "",
     "\(.seconds | num(2)) s (median of \(.runs_s | length)), \(.rows) rows"])
] as $rows
| [range(0; $rows[0] | length) as $c | [$rows[][$c] | length] | max] as $w
| ($rows | map([to_entries[] | .key as $k | .value | pad($w[$k])] | "| " + join(" | ") + " |")) as $lines
| "machine: \($j.machine.nproc) cores (\($j.machine.cpu)), \($j.machine.memory_gb) GB, PostgreSQL \($j.machine.postgresql); load average \($j.machine.load_average_at_start) at start, \($j.machine.load_average_at_end) at end",
  "commit \($j.run.commit); \($j.settings.clients) clients; ceilings \($j.settings.reference_seconds) s each, reads \($j.settings.read_seconds) s each",
  "",
  $lines[0],
  ("|" + ([$w[] | "-" * (. + 2)] | join("|")) + "|"),
  $lines[1:][],
  "",
  "\($j.run.verdict)\(if $j.run.failures | length > 0 then ": " + ($j.run.failures | join("; ")) else ": hot session exactly \($j.scenarios.hot.check.confirmed) confirmed / \($j.scenarios.hot.check.waitlisted) waitlisted, seats agree, no oversell, no 5xx" end)",
  "took \($j.run.total_seconds) s (build \($j.run.build_seconds) s, data load \($j.run.load_seconds) s); the service logged \($j.run.service_log.lines // "n/a") lines at warn level or above"
