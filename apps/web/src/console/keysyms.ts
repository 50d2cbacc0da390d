/** X11 keysyms of the keys pasted text needs besides printable Latin-1. */
const RETURN = 0xff0d;
const TAB = 0xff09;

/**
 * The keysyms that type `text` on the guest's keyboard, one per character: printable Latin-1 maps
 * to itself, other Unicode to 0x01000000 + its code point (the X11 convention), new lines to
 * Return. Control characters other than tab and new line are dropped.
 */
export function keysymsOf(text: string): number[] {
  const keysyms: number[] = [];
  for (const char of text.replace(/\r\n?/g, '\n')) {
    const code = char.codePointAt(0)!;
    if (char === '\n') keysyms.push(RETURN);
    else if (char === '\t') keysyms.push(TAB);
    else if (code < 0x20 || (code >= 0x7f && code < 0xa0)) continue;
    else if (code <= 0xff) keysyms.push(code);
    else keysyms.push(0x01000000 + code);
  }
  return keysyms;
}
