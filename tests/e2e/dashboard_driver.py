"""Drives the dashboard in headless Chromium (selenium), run with the clean
venv's python by test_http_dashboard.py: argv is a JSON object with url, key,
redis (port), gpuq (the program) and shots (a folder). Prints what it saw as
one JSON line."""
import json
import os
import subprocess
import sys
import time

import redis
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

a = json.loads(sys.argv[1])
r = redis.Redis(port=a["redis"])
seen = {}
opts = webdriver.ChromeOptions()
for o in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
    opts.add_argument(o)
opts.binary_location = "/usr/bin/chromium"
d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
worker = None


def until(cond, what, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            v = cond()
            if v:
                return v
        except Exception:   # the page redraws its tables every second
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}; status: {d.find_element(By.ID, 'status').text}")


def cell(cls):
    return d.find_element(By.CSS_SELECTOR, f"#queues tr[data-queue=default] td.{cls}").text


try:
    d.get(a["url"] + "/")
    seen["refused"] = until(lambda: d.find_element(By.ID, "status").text.startswith("401"), "a refusal") and \
        d.find_element(By.ID, "status").text
    d.save_screenshot(os.path.join(a["shots"], "1-refused-without-key.png"))
    d.find_element(By.ID, "key").send_keys(a["key"])
    d.find_element(By.ID, "save").click()
    until(lambda: cell("backlog") == "0", "the queue's row")
    job = json.dumps({"op": "softmax", "inputs": {"x": {"dtype": "f32", "shape": [1, 2], "data": "AACAPwAAAEA="}}})
    for _ in range(25):
        r.xadd("gpuq:{default}:jobs", {"json": job})
    seen["backlog"] = int(until(lambda: cell("backlog") if cell("backlog") == "25" else None, "a backlog of 25"))
    d.save_screenshot(os.path.join(a["shots"], "2-backlog.png"))
    worker = subprocess.Popen([a["gpuq"], "worker", "--redis", f"redis://127.0.0.1:{a['redis']}", "--backend", "cpu"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until(lambda: cell("backlog") == "0" and cell("pending") == "0", "the backlog to drain")
    until(lambda: d.find_elements(By.CSS_SELECTOR, "#workers tbody tr"), "a live worker")
    seen["drained"] = True
    seen["workers"] = len(d.find_elements(By.CSS_SELECTOR, "#workers tbody tr"))
    lat = lambda: d.find_element(By.CSS_SELECTOR, "#workers td.latency").text   # noqa: E731
    seen["latency"] = until(lambda: lat() if "/" in lat() else None, "the worker's latency percentiles")
    d.save_screenshot(os.path.join(a["shots"], "3-drained.png"))
    # a dead letter whose job is good: Retry puts it back, the worker runs it
    replay = json.dumps({"op": "softmax", "id": "replayed", "inputs": {"x": {"dtype": "f32", "shape": [1, 2],
                                                                           "data": "AACAPwAAAEA="}}})
    error = b"\x82\xa4code\xa8internal\xa7message\xb3worker died 5 times"
    dead_id = r.xadd("gpuq:{default}:dead", {"job": replay, "error": error, "attempts": 5}).decode()
    until(lambda: d.find_elements(By.CSS_SELECTOR, f"#dead tr[data-id='{dead_id}'] button.retry"), "the dead letter")
    seen["dead_text"] = d.find_element(By.CSS_SELECTOR, f"#dead tr[data-id='{dead_id}']").text
    d.save_screenshot(os.path.join(a["shots"], "4-dead-letter.png"))
    d.find_element(By.CSS_SELECTOR, f"#dead tr[data-id='{dead_id}'] button.retry").click()
    until(lambda: r.exists("gpuq:{default}:result:replayed"), "the retried job's result")
    until(lambda: not d.find_elements(By.CSS_SELECTOR, f"#dead tr[data-id='{dead_id}']"), "the row to go")
    seen["retried"] = r.xlen("gpuq:{default}:dead") == 0
    seen["status"] = d.find_element(By.ID, "status").text
    d.save_screenshot(os.path.join(a["shots"], "5-retried.png"))
finally:
    d.quit()
    if worker:
        worker.terminate()
        worker.wait()
print(json.dumps(seen))
