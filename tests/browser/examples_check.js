// Drives the pages of the examples in headless Chromium, for tests/test_examples_browser.py.
//
//   node examples_check.js dashboard URL SCREENSHOT.png USER_DATA_DIR
//   node examples_check.js static URL SCREENSHOT.png USER_DATA_DIR [MESSAGE]
//
// dashboard: waits until readings arrive and the chart is drawn, prints {"step": "live", ...}, then
//   waits for the page to lose its server and to reconnect (the test restarts the server on the same
//   port when it reads the "live" line) and for new readings to be drawn.
// static: waits for the page's WebSocket to open, sends MESSAGE from the form, waits for its echo.
//
// Prints one JSON line per step, the last with {"step": "done", ...}; exits 0 on success, 1 otherwise.
// Uses the system Chromium (CHROMIUM, default /usr/bin/chromium): never a downloaded browser.
"use strict";

const { chromium } = require("playwright-core");

const STEP_TIMEOUT = 60000; // ms: hang guards only

function report(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

// Non-blank pixels of the chart, and how many points the page says it drew.
async function chartState(page) {
  return page.evaluate(() => {
    const canvas = document.getElementById("chart");
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) {
      if (pixels[i] !== 0) painted += 1;
    }
    return { painted, points: Number(canvas.dataset.points), count: document.getElementById("count").textContent };
  });
}

async function dashboard(page, result) {
  await page.waitForSelector("#status.open");
  result.statusOpen = (await page.textContent("#status")).trim();
  // Three readings received (not counting the history sent on connection) and drawn.
  await page.waitForFunction(() => parseInt(document.getElementById("count").textContent, 10) >= 3);
  result.before = await chartState(page);
  // Record every status the page shows from now on: the outage may be brief.
  await page.evaluate(() => {
    window.statusSeen = [];
    const box = document.getElementById("status");
    new MutationObserver(() => window.statusSeen.push(box.className)).observe(box, { childList: true, attributes: true });
  });
  report({ step: "live", before: result.before });
  await page.waitForFunction(() => window.statusSeen.indexOf("closed") >= 0, null, { timeout: STEP_TIMEOUT });
  const received = parseInt(result.before.count, 10);
  await page.waitForFunction((before) => {
    const seen = window.statusSeen;
    const reopened = seen.lastIndexOf("open") > seen.indexOf("closed") && seen.indexOf("closed") >= 0;
    // The restarted server's history is short: wait until the chart itself holds 3 points again.
    const drawn = Number(document.getElementById("chart").dataset.points);
    return reopened && parseInt(document.getElementById("count").textContent, 10) >= before + 3 && drawn >= 3;
  }, received, { timeout: STEP_TIMEOUT });
  result.statusSeen = await page.evaluate(() => window.statusSeen);
  result.after = await chartState(page);
  result.current = (await page.textContent("#current")).trim();
}

async function staticPage(page, result, message) {
  await page.waitForSelector("#status.open");
  result.statusOpen = (await page.textContent("#status")).trim();
  await page.fill("#message", message);
  await page.press("#message", "Enter");
  const echo = page.locator("#log p.echo");
  await echo.first().waitFor();
  result.echo = (await echo.first().textContent()).trim();
}

async function main() {
  const [mode, url, screenshot, userDataDir, message = "hello from chromium \u2713"] = process.argv.slice(2);
  if (!["dashboard", "static"].includes(mode) || !url || !screenshot || !userDataDir) {
    throw new Error("usage: node examples_check.js dashboard|static URL SCREENSHOT USER_DATA_DIR [MESSAGE]");
  }
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: STEP_TIMEOUT,
    viewport: { width: 900, height: 700 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const result = { step: "done", mode, url, consoleErrors: [] };
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT);
    page.on("console", (msg) => { if (msg.type() === "error") result.consoleErrors.push(msg.text()); });
    page.on("pageerror", (error) => result.consoleErrors.push(String(error)));
    await page.goto(url, { waitUntil: "load" });
    result.title = await page.title();
    if (mode === "dashboard") {
      await dashboard(page, result);
    } else {
      await staticPage(page, result, message);
    }
    await page.screenshot({ path: screenshot });
  } finally {
    await context.close();
  }
  report(result);
}

main().then(
  () => process.exit(0),
  (error) => {
    report({ step: "error", error: String(error && error.stack || error) });
    process.exit(1);
  },
);
