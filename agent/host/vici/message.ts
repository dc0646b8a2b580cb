// The VICI message format (strongSwan src/libcharon/plugins/vici/README.md, "Message format"):
// a sequence of elements forming a tree of sections, key/values and lists, mapped to plain JS
// objects: sections → objects, lists → string arrays, values → strings.

/** Element types of a message. */
export const Element = {
  SECTION_START: 1,
  SECTION_END: 2,
  KEY_VALUE: 3,
  LIST_START: 4,
  LIST_ITEM: 5,
  LIST_END: 6,
} as const;

/** A decoded message: what charon sends. */
export type ViciValue = string | string[] | ViciSection;
export interface ViciSection {
  [key: string]: ViciValue;
}

/** What may be encoded: numbers and booleans become strings ("yes"/"no"), undefined keys are skipped. */
export type ViciInputScalar = string | number | boolean;
export type ViciInputValue = ViciInputScalar | readonly ViciInputScalar[] | ViciInput | undefined;
export interface ViciInput {
  readonly [key: string]: ViciInputValue;
}

const MAX_NAME_BYTES = 255;
const MAX_VALUE_BYTES = 65535;

export class ViciEncodeError extends Error {
  constructor(path: string, problem: string) {
    super(`cannot encode VICI message at ${path || "(root)"}: ${problem}`);
    this.name = "ViciEncodeError";
  }
}

export class ViciDecodeError extends Error {
  constructor(offset: number, problem: string) {
    super(`malformed VICI message at byte ${offset}: ${problem}`);
    this.name = "ViciDecodeError";
  }
}

function scalarText(value: ViciInputScalar): string {
  if (typeof value === "boolean") return value ? "yes" : "no";
  return String(value);
}

/** Encodes a message; throws ViciEncodeError naming the key when a name or value does not fit. */
export function encodeMessage(message: ViciInput): Buffer {
  const parts: Buffer[] = [];
  const name = (text: string, path: string) => {
    const bytes = Buffer.from(text, "utf8");
    if (bytes.length === 0 || bytes.length > MAX_NAME_BYTES) {
      throw new ViciEncodeError(path, `key names must be 1-${MAX_NAME_BYTES} bytes`);
    }
    parts.push(Buffer.from([bytes.length]), bytes);
  };
  // Values are never echoed in errors: they may be secrets (PSKs).
  const value = (text: string, path: string) => {
    const bytes = Buffer.from(text, "utf8");
    if (bytes.length > MAX_VALUE_BYTES) throw new ViciEncodeError(path, `value longer than ${MAX_VALUE_BYTES} bytes`);
    const length = Buffer.alloc(2);
    length.writeUInt16BE(bytes.length);
    parts.push(length, bytes);
  };
  const section = (input: ViciInput, path: string) => {
    for (const [key, item] of Object.entries(input)) {
      const at = path ? `${path}.${key}` : key;
      if (item === undefined) continue;
      if (Array.isArray(item)) {
        parts.push(Buffer.from([Element.LIST_START]));
        name(key, at);
        item.forEach((entry, i) => {
          if (typeof entry === "object" || entry === undefined) throw new ViciEncodeError(`${at}[${i}]`, "list items must be strings");
          parts.push(Buffer.from([Element.LIST_ITEM]));
          value(scalarText(entry), `${at}[${i}]`);
        });
        parts.push(Buffer.from([Element.LIST_END]));
      } else if (typeof item === "object" && item !== null) {
        parts.push(Buffer.from([Element.SECTION_START]));
        name(key, at);
        section(item as ViciInput, at);
        parts.push(Buffer.from([Element.SECTION_END]));
      } else if (typeof item === "string" || typeof item === "number" || typeof item === "boolean") {
        parts.push(Buffer.from([Element.KEY_VALUE]));
        name(key, at);
        value(scalarText(item), at);
      } else {
        throw new ViciEncodeError(at, `unsupported value type ${item === null ? "null" : typeof item}`);
      }
    }
  };
  section(message, "");
  return Buffer.concat(parts);
}

/** Sets a key without ever touching the prototype (a key may be "__proto__"). */
function put(target: ViciSection, key: string, item: ViciValue, offset: number): void {
  if (Object.prototype.hasOwnProperty.call(target, key)) throw new ViciDecodeError(offset, `duplicate key "${key}"`);
  Object.defineProperty(target, key, { value: item, enumerable: true, writable: true, configurable: true });
}

/** Decodes a message; throws ViciDecodeError on truncated, unbalanced or misplaced elements. */
export function decodeMessage(data: Uint8Array): ViciSection {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const root: ViciSection = {};
  const stack: ViciSection[] = [root];
  let list: { items: string[] } | undefined;
  let pos = 0;

  const need = (count: number, what: string) => {
    if (pos + count > buf.length) throw new ViciDecodeError(pos, `truncated ${what}`);
  };
  const readName = () => {
    need(1, "name length");
    const length = buf[pos]!;
    pos += 1;
    need(length, "name");
    const text = buf.toString("utf8", pos, pos + length);
    pos += length;
    return text;
  };
  const readValue = () => {
    need(2, "value length");
    const length = buf.readUInt16BE(pos);
    pos += 2;
    need(length, "value");
    const text = buf.toString("utf8", pos, pos + length);
    pos += length;
    return text;
  };

  while (pos < buf.length) {
    const at = pos;
    const type = buf[pos]!;
    pos += 1;
    const current = stack[stack.length - 1]!;
    if (list && type !== Element.LIST_ITEM && type !== Element.LIST_END) {
      throw new ViciDecodeError(at, `element type ${type} inside a list`);
    }
    switch (type) {
      case Element.SECTION_START: {
        const section: ViciSection = {};
        put(current, readName(), section, at);
        stack.push(section);
        break;
      }
      case Element.SECTION_END:
        if (stack.length === 1) throw new ViciDecodeError(at, "section end without a section");
        stack.pop();
        break;
      case Element.KEY_VALUE: {
        const key = readName();
        put(current, key, readValue(), at);
        break;
      }
      case Element.LIST_START: {
        const items: string[] = [];
        put(current, readName(), items, at);
        list = { items };
        break;
      }
      case Element.LIST_ITEM:
        if (!list) throw new ViciDecodeError(at, "list item outside a list");
        list.items.push(readValue());
        break;
      case Element.LIST_END:
        if (!list) throw new ViciDecodeError(at, "list end without a list");
        list = undefined;
        break;
      default:
        throw new ViciDecodeError(at, `unknown element type ${type}`);
    }
  }
  if (list) throw new ViciDecodeError(pos, "unterminated list");
  if (stack.length !== 1) throw new ViciDecodeError(pos, `${stack.length - 1} unterminated section(s)`);
  return root;
}
