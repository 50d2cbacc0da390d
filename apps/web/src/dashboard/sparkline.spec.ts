import { describe, expect, it } from 'vitest';
import { sparkline } from './sparkline';

describe('sparkline', () => {
  it('draws nothing without samples', () => {
    expect(sparkline([], 100, 20)).toEqual({ line: '', area: '', last: null });
  });

  it('spreads the samples over the width, 0 at the bottom and max at the top (inside the inset)', () => {
    const shape = sparkline([0, 0.5, 1], 102, 22, 1, 1);
    expect(shape.line).toBe('M1,21 L51,11 L101,1');
    expect(shape.area).toBe('M1,21 L51,11 L101,1 L101,22 L1,22 Z');
    expect(shape.last).toEqual({ x: 101, y: 1 });
  });

  it('draws a single sample as a flat line across the box', () => {
    expect(sparkline([0.25], 82, 10, 1, 1).line).toBe('M1,7 L81,7');
  });

  it('clamps values outside 0..max and treats non-numbers as 0', () => {
    expect(sparkline([-1, 2, Number.NaN], 12, 12, 1, 1).line).toBe('M1,11 L6,1 L11,11');
  });

  it('scales to another maximum', () => {
    expect(sparkline([50, 100], 12, 12, 200, 1).line).toBe('M1,8.5 L11,6');
  });

  it('rounds coordinates to one decimal', () => {
    expect(sparkline([0, 0, 0, 1], 12, 12, 1, 1).line).toBe('M1,11 L4.3,11 L7.7,11 L11,1');
  });
});
