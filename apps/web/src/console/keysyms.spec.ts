import { describe, expect, it } from 'vitest';
import { keysymsOf } from './keysyms';

describe('typing pasted text on the console', () => {
  it('maps printable text to itself, new lines to Return and other Unicode to X11 keysyms', () => {
    expect(keysymsOf('ls -l\n')).toEqual([0x6c, 0x73, 0x20, 0x2d, 0x6c, 0xff0d]);
    expect(keysymsOf('a\r\nb')).toEqual([0x61, 0xff0d, 0x62]);
    expect(keysymsOf('é€')).toEqual([0xe9, 0x010020ac]);
  });

  it('drops control characters that would act as keys of their own', () => {
    expect(keysymsOf('a\u0003\u001bb\tc')).toEqual([0x61, 0x62, 0xff09, 0x63]);
  });
});
