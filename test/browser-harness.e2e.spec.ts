import { tempDir } from '@debvisor/testing';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectNoProblems, launchChromium, screenshotChecked } from './browser-harness';

/** The harness's own promise: a page's console errors fail the browser test that opened it. */
describe('the browser harness', () => {
  let browser: Browser;
  let page: Page;
  const shots = tempDir('debvisor-harness-e2e-');

  beforeAll(async () => {
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
  });

  async function pageLogging(line: string): Promise<Page> {
    const opened = await (await browser.newContext()).newPage();
    await opened.setContent(
      `<!doctype html><html lang="en"><head><title>t</title></head><body><main><h1>t</h1></main><script>console.error(${JSON.stringify(line)})</script></body></html>`,
    );
    return opened;
  }

  it('fails the check at a screenshot on a console error nobody allowed', async () => {
    page = await pageLogging('something broke');
    await expect(screenshotChecked(page, join(shots, 'broken.png'))).rejects.toThrow(
      /console: something broke/,
    );
  });

  it('passes what the call allows, and checks each problem once', async () => {
    page = await pageLogging('expected refusal');
    await screenshotChecked(page, join(shots, 'allowed.png'), [/^console: expected refusal$/]);
    expectNoProblems(page);
  });

  it('fails on a page error and on an uncaught problem at close', async () => {
    page = await pageLogging('left over');
    await page.evaluate(() =>
      setTimeout(() => {
        throw new Error('uncaught');
      }),
    );
    await expect
      .poll(() => {
        try {
          expectNoProblems(page, [/^console: left over$/]);
          return 'none';
        } catch (error) {
          return String(error);
        }
      })
      .toMatch(/page error: uncaught/);
    const other = await launchChromium();
    await (await other.newPage()).setContent('<script>console.error("never checked")</script>');
    await expect(other.close()).rejects.toThrow(/console: never checked/);
  });
});
