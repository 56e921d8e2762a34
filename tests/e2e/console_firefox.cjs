// Firefox for the console's browser tests: Debian's firefox-esr, headless, driven over WebDriver BiDi by
// puppeteer-core (the npm package without a browser download; `make test` installs both).
//
// Reads a plan (JSON) on stdin: {base, key, artifacts, axe, timeout, pages: [{name, path | link, charts, read}]}:
// `path` is opened, or `link` is a CSS selector of a link on the previous page whose href is followed;
// `read` maps a name to [CSS selector, attribute]: that attribute of every matching element is wanted.
// Logs in through the form with the keyboard (Tab to the API key field, type, Enter), then opens every
// page, waits for its Plotly charts to render, reads the values, runs axe-core and saves a full-page
// screenshot `<artifacts>/firefox-<name>.png`. Writes one JSON report on stdout:
// {version, login: {status, url}, pages: [{name, status, charts, values, violations, errors}]}.
// Console errors and uncaught exceptions are attributed to the page during which they happened.
// Assertions are the Python test's (tests/e2e/test_console.py); this script only observes.
'use strict';

const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');

const FIREFOX = process.env.DRIFTLINE_FIREFOX || '/usr/bin/firefox-esr';

const CHARTS_RENDERED = (minimum) =>
  document.querySelectorAll('div.chart').length >= minimum &&
  [...document.querySelectorAll('div.chart')].every(
    (c) => c.dataset.rendered === 'true' && c.querySelector('.main-svg'));

// Polls with plain evaluate: puppeteer's waitForFunction ends in "Waiting failed" on these pages in firefox-esr 140.
async function until(page, predicate, arg, timeout, what) {
  const deadline = Date.now() + timeout;
  while (!(await page.evaluate(predicate, arg))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function readValues(page, read) {
  const values = {};
  for (const [name, [selector, attribute]] of Object.entries(read || {})) {
    values[name] = await page.$$eval(selector, (els, a) => els.map((e) => e.getAttribute(a)), attribute);
  }
  return values;
}

async function axe(page, source) {
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) {
    // Evaluated by the driver (WebDriver BiDi script.evaluate): the page's CSP does not apply to it.
    await page.evaluate(source);
  }
  return page.evaluate(() => window.axe.run(document, {resultTypes: ['violations']}).then((r) =>
    r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5)}))));
}

async function login(page, plan) {
  await page.goto(plan.base + '/login', {waitUntil: 'load'});
  for (let i = 0; i < 15; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(() => document.activeElement && document.activeElement.id === 'api-key')) {
      await page.keyboard.type(plan.key);
      const [response] = await Promise.all([page.waitForNavigation({waitUntil: 'load'}),
        page.keyboard.press('Enter')]);
      return {status: response ? response.status() : null, url: page.url()};
    }
  }
  throw new Error('the API key field is not reachable with Tab');
}

async function main() {
  const plan = JSON.parse(fs.readFileSync(0, 'utf8'));
  const axeSource = fs.readFileSync(plan.axe, 'utf8');
  fs.mkdirSync(plan.artifacts, {recursive: true});
  // The window size is a launch argument: firefox-esr 140 lacks the BiDi command behind setViewport.
  const browser = await puppeteer.launch({browser: 'firefox', executablePath: FIREFOX, headless: true,
    defaultViewport: null, args: ['--window-size=1280,800'],
    protocolTimeout: plan.timeout, extraPrefsFirefox: {'app.update.enabled': false,
      'browser.shell.checkDefaultBrowser': false, 'datareporting.policy.dataSubmissionEnabled': false}});
  let errors = [];
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(plan.timeout);
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console.error: ${m.text()}`);
    });
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message || e}`));
    const report = {version: await browser.version(), login: await login(page, plan), pages: []};
    report.login.errors = errors;
    for (const p of plan.pages) {
      errors = [];
      const target = p.path ? plan.base + p.path : await page.$eval(p.link, (a) => a.href);
      const response = await page.goto(target, {waitUntil: 'load'});
      if (p.charts) await until(page, CHARTS_RENDERED, p.charts, plan.timeout, `${p.charts} charts on ${p.name}`);
      const charts = await page.$$eval('div.chart', (cs) => cs.map((c) => ({
        testid: c.dataset.testid || '', svgs: c.querySelectorAll('.main-svg').length})));
      const values = await readValues(page, p.read);
      const violations = await axe(page, axeSource);
      await page.screenshot({path: path.join(plan.artifacts, `firefox-${p.name}.png`), fullPage: true});
      report.pages.push({name: p.name, url: page.url(), status: response ? response.status() : null, charts, values,
        violations, errors});
    }
    process.stdout.write(JSON.stringify(report));
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
