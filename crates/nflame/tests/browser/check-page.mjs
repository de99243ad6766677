// Loads an nflame HTML report in Debian's headless Chromium and searches each
// embedded flame graph for a frame name, as a person would with Ctrl-F.
// Usage: node check-page.mjs FILE.html NEEDLE
// Prints one JSON object: {errors: [...], graphs: n, matched: ["Matched: 12.3%", ...]}.
import { chromium } from 'playwright-core';

const [file, needle] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.NFLAME_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const errors = [];
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => errors.push(`pageerror: ${e}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url().slice(0, 80)}`));
  await page.goto('file://' + file, { waitUntil: 'load' });
  const graphs = page.frames().filter((f) => f !== page.mainFrame());
  const matched = [];
  for (const frame of graphs) {
    await frame.waitForFunction(() => typeof search === 'function' && document.getElementById('frames'));
    const text = await frame.evaluate((term) => {
      search(term);
      return document.getElementById('matched').textContent;
    }, needle);
    matched.push(text.trim());
  }
  console.log(JSON.stringify({ errors, graphs: graphs.length, matched }));
} finally {
  await browser.close();
}
