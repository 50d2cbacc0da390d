// Ends a vitest run with one plain line, `Tests: N passed, N failed, N skipped`, that CI reads.
// A test that did not run because a hook of its suite (or its file) failed counts as failed, not
// skipped: only tests skipped on purpose are "skipped".
export default class SummaryReporter {
  onTestRunEnd(testModules, unhandledErrors = []) {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') counts.passed++;
        else if (state === 'failed' || underFailure(test, module)) counts.failed++;
        else counts.skipped++;
      }
    }
    const errors = unhandledErrors.length ? `, ${unhandledErrors.length} unhandled errors` : '';
    process.stdout.write(
      `\nTests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped${errors}\n`,
    );
  }
}

function underFailure(test, module) {
  for (let parent = test.parent; parent && parent !== module; parent = parent.parent) {
    if (parent.state?.() === 'failed') return true;
  }
  return module.state?.() === 'failed' && (module.errors?.().length ?? 0) > 0;
}
