# Assembles bench/results/<date>.json from the parts bench/run measured (see bench/run).
def r2: if . == null then null else (. * 100 | round) / 100 end;
def ratio(a; b): if a == null or b == null or b == 0 then null else (a / b | r2) end;

($parts | add // {}) as $r
| ($r.reference // {}) as $ref
| (if $ref.missing then null else $ref end) as $ceil
| ($r.static // {}) as $static
| {
    hot_to_seats_hot: ratio($r.hot.rps; $ceil.seats_hot.tps),
    spread_to_seats_spread: ratio($r.spread.rps; $ceil.seats_spread.tps),
    hot_to_service_sql_hot: ratio($r.hot.rps; $r.service_sql_hot.tps),
    spread_to_service_sql_spread: ratio($r.spread.rps; $r.service_sql_spread.tps),
    service_sql_hot_to_seats_hot: ratio($r.service_sql_hot.tps; $ceil.seats_hot.tps),
    service_sql_spread_to_seats_spread: ratio($r.service_sql_spread.tps; $ceil.seats_spread.tps),
    seats_hot_to_counter_hot: ratio($ceil.seats_hot.tps; $ceil.counter_hot.tps),
    programme_to_static: ratio($r.programme.rps; $static.rps),
    programme_304_to_static: ratio($r.programme_304.rps; $static.rps),
    programme_304_to_programme: ratio($r.programme_304.rps; $r.programme.rps),
    export_seconds_to_copy_seconds: ratio($r.export.seconds; $r.copy.seconds),
    queue_after_leavers_to_before: ratio($r.queue_after.rps; $r.queue_before.rps),
    notify_to_hot: ratio($r.notify.rps; $r.hot.rps),
    notify_to_quiet: ratio($r.notify.rps; $r.quiet.rps)
  } as $ratios
| {
  run: {
    started_at: $started, commit: $commit,
    verdict: (if ($failures | length) == 0 then "PASS" else "FAIL" end), failures: $failures,
    build_seconds: $build, load_seconds: $load, total_seconds: $total,
    service_log: $r.server_log
  },
  machine: $machine,
  settings: {clients: $clients, reference_seconds: $ref_s, read_seconds: $read_s,
             service: "REGISTRAR_ENV=production, default pool (32) and workers (one per CPU)",
             pgbench_service_sql: "-M prepared -j 2, same clients, the scenarios' numbers of registrations"},
  scenarios: {
    hot: ($r.hot + {ratio_to: "seats_hot", ratio: $ratios.hot_to_seats_hot}),
    spread: ($r.spread + {ratio_to: "seats_spread", ratio: $ratios.spread_to_seats_spread}),
    queue_before: $r.queue_before,
    quiet: $r.quiet,
    notify: ($r.notify + {ratio_to: "quiet", ratio: $ratios.notify_to_quiet}),
    notify_delivery: $r.notify_delivery,
    queue_after: ($r.queue_after + {ratio_to: "queue_before", ratio: $ratios.queue_after_leavers_to_before}),
    programme: ($r.programme + {ratio_to: "static_programme", ratio: $ratios.programme_to_static}),
    programme_304: ($r.programme_304 + {ratio_to: "static_programme", ratio: $ratios.programme_304_to_static}),
    export: ($r.export + {ratio_to: "copy (seconds over seconds)", ratio: $ratios.export_seconds_to_copy_seconds}),
    xlsx_export: ($r.xlsx_export + {ratio_to: "CSV export (seconds over seconds)",
                   ratio: (if $r.xlsx_export.seconds and $r.export.seconds
                           then ($r.xlsx_export.seconds / $r.export.seconds * 100 | round / 100)
                           else null end)}),
    badges_pdf: $r.badges_pdf,

    import: $r.import,
    feed: $r.feed
  },
  ceilings: {
    reference: $ref,
    reference_latency: $r.reference_latency,
    service_sql_hot: ($r.service_sql_hot + {ratio_to: "seats_hot", ratio: $ratios.service_sql_hot_to_seats_hot}),
    service_sql_spread: ($r.service_sql_spread + {ratio_to: "seats_spread", ratio: $ratios.service_sql_spread_to_seats_spread}),
    static_programme: $static,
    copy: $r.copy
  },
  ratios: $ratios,
  targets: {
    hot_ratio_at_least_0_5: (if $ratios.hot_to_seats_hot then $ratios.hot_to_seats_hot >= 0.5 else null end),
    hot_p99_under_50_ms: (if $r.hot.p99_ms then $r.hot.p99_ms < 50 else null end),
    spread_ratio_at_least_0_5: (if $ratios.spread_to_seats_spread then $ratios.spread_to_seats_spread >= 0.5 else null end),
    spread_p99_under_50_ms: (if $r.spread.p99_ms then $r.spread.p99_ms < 50 else null end),
    # Whether PostgreSQL alone, running the reference's minimal registration at the same
    # concurrency, answers within 50 ms at the 99th percentile: if not, no service can.
    database_alone_p99_under_50_ms: (if $r.reference_latency.seats_hot.p99_ms then $r.reference_latency.seats_hot.p99_ms < 50 else null end),
    # A waitlist position costs the same however many places left the queue before.
    queue_after_leavers_at_least_0_8_of_before: (if $ratios.queue_after_leavers_to_before then $ratios.queue_after_leavers_to_before >= 0.8 else null end),
    # Webhooks and email cost registrations at most a tenth of their rate.
    # (against the same run without them just before, on the same database)
    notify_ratio_at_least_0_9: (if $ratios.notify_to_quiet then $ratios.notify_to_quiet >= 0.9 else null end),
    programme_ratio_at_least_0_5: (if $ratios.programme_to_static then $ratios.programme_to_static >= 0.5 else null end),
    programme_304_faster_than_200: (if $ratios.programme_304_to_programme then $ratios.programme_304_to_programme > 1 else null end),
    export_ratio_at_most_2: (if $ratios.export_seconds_to_copy_seconds then $ratios.export_seconds_to_copy_seconds <= 2 else null end),
    export_peak_rss_under_100_mb: (if $r.export.peak_rss_mb then $r.export.peak_rss_mb < 100 else null end)
  }
}
