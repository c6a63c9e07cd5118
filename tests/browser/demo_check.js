// Opens the simplews demo page in headless Chromium, sends a message, waits for its echo;
// with DEMO_CHAT=1 also opens a second tab and waits for the message relayed to it.
//
//   node demo_check.js URL SCREENSHOT.png USER_DATA_DIR [MESSAGE]
//
// Prints one JSON line with what it saw; exits 0 when the echo arrived, 1 otherwise.
// Uses the system Chromium (CHROMIUM, default /usr/bin/chromium): never a downloaded browser.
"use strict";

const { chromium } = require("playwright-core");

const STEP_TIMEOUT = 30000; // ms: hang guards only

async function main() {
  const [url, screenshot, userDataDir, message = "hello from chromium \u2713"] = process.argv.slice(2);
  if (!url || !screenshot || !userDataDir) {
    throw new Error("usage: node demo_check.js URL SCREENSHOT USER_DATA_DIR [MESSAGE]");
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
  const result = { url, message, consoleErrors: [] };
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.setDefaultTimeout(STEP_TIMEOUT);
    page.on("console", (msg) => { if (msg.type() === "error") result.consoleErrors.push(msg.text()); });
    page.on("pageerror", (error) => result.consoleErrors.push(String(error)));

    await page.goto(url, { waitUntil: "load" });
    result.title = await page.title();
    await page.waitForSelector("#status.open");
    result.statusOpen = (await page.textContent("#status")).trim();

    await page.fill("#message", message);
    await page.press("#message", "Enter");
    const echo = page.locator(".msg.received", { hasText: message });
    await echo.first().waitFor();
    result.echo = (await echo.first().innerText()).trim();
    result.counts = (await page.textContent("#counts")).trim();

    if (process.env.DEMO_CHAT === "1") {
      // A second tab: what the first one sends is relayed to it as "guest-N: message".
      const other = await context.newPage();
      other.setDefaultTimeout(STEP_TIMEOUT);
      other.on("pageerror", (error) => result.consoleErrors.push(String(error)));
      await other.goto(url, { waitUntil: "load" });
      await other.waitForSelector("#status.open");
      await page.locator(".msg.received", { hasText: "joined" }).first().waitFor();
      const second = message + " (again)";
      await page.fill("#message", second);
      await page.press("#message", "Enter");
      const relayed = other.locator(".msg.received", { hasText: ": " + second });
      await relayed.first().waitFor();
      result.relayed = (await relayed.first().innerText()).trim();
      await other.screenshot({ path: screenshot });
      await other.close();
    } else {
      await page.screenshot({ path: screenshot });
    }
  } finally {
    await context.close();
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stdout.write(JSON.stringify({ error: String(error && error.stack || error) }) + "\n");
    process.exit(1);
  },
);
