/**
 * A minimal XML reader for what libvirt prints (virsh dumpxml, capabilities): elements, attributes,
 * text, comments, CDATA, processing instructions and the predefined and numeric entities. No DTDs,
 * no external entities (nothing is ever fetched or expanded beyond the five names and &#…;).
 */
export interface XmlElement {
  /** The qualified name as written (prefix:local). */
  name: string;
  attributes: Record<string, string>;
  children: XmlElement[];
  /** The element's own text (the concatenation of its text nodes). */
  text: string;
}

export class XmlParseError extends Error {}

const NAME = /[A-Za-z_:][-A-Za-z0-9._:]*/y;
const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Parses a document and answers its root element; throws XmlParseError on what it cannot read. */
export function parseXml(source: string): XmlElement {
  let pos = 0;
  const fail = (message: string): never => {
    throw new XmlParseError(`${message} at offset ${pos}`);
  };
  const skipMisc = () => {
    for (;;) {
      while (pos < source.length && /\s/.test(source[pos])) pos++;
      if (source.startsWith('<?', pos)) pos = after('?>');
      else if (source.startsWith('<!--', pos)) pos = after('-->');
      else if (source.startsWith('<!DOCTYPE', pos)) fail('a DOCTYPE is not accepted');
      else return;
    }
  };
  const after = (end: string): number => {
    const at = source.indexOf(end, pos);
    if (at < 0) fail(`unterminated construct, missing ${end}`);
    return at + end.length;
  };
  const name = (): string => {
    NAME.lastIndex = pos;
    const match = NAME.exec(source);
    if (!match) return fail('expected a name');
    pos += match[0].length;
    return match[0];
  };
  const element = (): XmlElement => {
    if (source[pos] !== '<') fail('expected <');
    pos++;
    const node: XmlElement = { name: name(), attributes: {}, children: [], text: '' };
    for (;;) {
      while (/\s/.test(source[pos] ?? '')) pos++;
      if (source.startsWith('/>', pos)) {
        pos += 2;
        return node;
      }
      if (source[pos] === '>') {
        pos++;
        break;
      }
      const attribute = name();
      while (/\s/.test(source[pos] ?? '')) pos++;
      if (source[pos] !== '=') fail('expected =');
      pos++;
      while (/\s/.test(source[pos] ?? '')) pos++;
      const quote = source[pos];
      if (quote !== '"' && quote !== "'") fail('expected a quoted attribute value');
      const end = source.indexOf(quote, pos + 1);
      if (end < 0) fail('unterminated attribute value');
      node.attributes[attribute] = decode(source.slice(pos + 1, end), fail);
      pos = end + 1;
    }
    for (;;) {
      if (pos >= source.length) fail(`unterminated element ${node.name}`);
      if (source.startsWith('</', pos)) {
        pos += 2;
        if (name() !== node.name) fail(`mismatched end tag for ${node.name}`);
        while (/\s/.test(source[pos] ?? '')) pos++;
        if (source[pos] !== '>') fail('expected >');
        pos++;
        return node;
      }
      if (source.startsWith('<!--', pos)) pos = after('-->');
      else if (source.startsWith('<![CDATA[', pos)) {
        const end = after(']]>');
        node.text += source.slice(pos + 9, end - 3);
        pos = end;
      } else if (source.startsWith('<?', pos)) pos = after('?>');
      else if (source[pos] === '<') node.children.push(element());
      else {
        const end = source.indexOf('<', pos);
        const raw = source.slice(pos, end < 0 ? source.length : end);
        node.text += decode(raw, fail);
        pos += raw.length;
      }
    }
  };

  skipMisc();
  const root = element();
  skipMisc();
  if (pos !== source.length) fail('content after the root element');
  return root;
}

function decode(raw: string, fail: (message: string) => never): string {
  return raw.replace(/&([^;&\s]*);?/g, (whole, entity: string) => {
    if (!whole.endsWith(';')) return fail('an unterminated entity reference');
    if (entity in ENTITIES) return ENTITIES[entity];
    const numeric = /^#(?:x([0-9A-Fa-f]{1,6})|([0-9]{1,7}))$/.exec(entity);
    const code = numeric ? parseInt(numeric[1] ?? numeric[2], numeric[1] ? 16 : 10) : NaN;
    if (!Number.isInteger(code) || code > 0x10ffff) return fail(`an unknown entity &${entity};`);
    return String.fromCodePoint(code);
  });
}

/** Escapes text for an XML attribute (quoted with ' or ") or element content. */
export function escapeXml(value: string): string {
  return value.replace(/[<>&"'\t\n\r]/g, (c) => XML_ESCAPES[c]);
}

const XML_ESCAPES: Record<string, string> = {
  '<': '&lt;',
  '>': '&gt;',
  '&': '&amp;',
  '"': '&quot;',
  "'": '&apos;',
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};

/** The first child named `name`, if any. */
export function child(element: XmlElement | undefined, name: string): XmlElement | undefined {
  return element?.children.find((c) => c.name === name);
}

/** Every child named `name`. */
export function children(element: XmlElement | undefined, name: string): XmlElement[] {
  return element?.children.filter((c) => c.name === name) ?? [];
}
