-- wrk script: POST BENCH_BODY (JSON) with "Authorization: Bearer BENCH_TOKEN"
-- to the URL's path, e.g. key creation in bench/users.sh.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN")
