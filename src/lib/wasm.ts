/**
 * The little WebAssembly the model assembles for its page hashes (lib/jhash.ts,
 * lib/xxhash.ts): LEB128 encoders and a one-memory module builder. The kernels are
 * written out as instruction lists in their own modules, so that what runs is what
 * you read, rather than shipped as opaque .wasm files.
 */

export function uleb128(n: number, out: number[]): void {
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
}

export function sleb128(n: number, out: number[]): void {
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) {
      out.push(byte);
      return;
    }
    out.push(byte | 0x80);
  }
}

/** sleb128 of a signed 64-bit value (an i64.const immediate). */
export function sleb128Big(n: bigint, out: number[]): void {
  for (;;) {
    const byte = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && (byte & 0x40) === 0) || (n === -1n && (byte & 0x40) !== 0)) {
      out.push(byte);
      return;
    }
    out.push(byte | 0x80);
  }
}

export interface WasmModuleSpec {
  /** Value types of the parameters every function takes (0x7f i32, 0x7e i64); no results. */
  params: number[];
  /** The functions, exported under their names, each a body (locals and code, ending in `end`). */
  functions: { name: string; body: number[] }[];
  /** Size of the one memory (exported as `memory`), in 64 KiB pages. */
  memoryPages: number;
}

/** The bytes of a module: one function type, the functions, one memory, their exports. */
export function wasmModule(spec: WasmModuleSpec): Uint8Array {
  const section = (id: number, body: number[], out: number[]): void => {
    out.push(id);
    uleb128(body.length, out);
    out.push(...body);
  };
  const name = (s: string, out: number[]): void => {
    out.push(s.length);
    for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i));
  };
  const bytes: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  section(1, [1, 0x60, spec.params.length, ...spec.params, 0], bytes);
  const fns: number[] = [];
  uleb128(spec.functions.length, fns);
  for (let i = 0; i < spec.functions.length; i++) fns.push(0);
  section(3, fns, bytes);
  const mem: number[] = [1, 0x00];
  uleb128(spec.memoryPages, mem);
  section(5, mem, bytes);
  const exports: number[] = [];
  uleb128(spec.functions.length + 1, exports);
  spec.functions.forEach((f, i) => {
    name(f.name, exports);
    exports.push(0x00);
    uleb128(i, exports);
  });
  name('memory', exports);
  exports.push(0x02, 0);
  section(7, exports, bytes);
  const code: number[] = [];
  uleb128(spec.functions.length, code);
  for (const f of spec.functions) {
    uleb128(f.body.length, code);
    code.push(...f.body);
  }
  section(10, code, bytes);
  return Uint8Array.from(bytes);
}

/**
 * The few members of the WebAssembly JS API used here: neither lib ES2022 nor
 * @types/node 20 declares the namespace.
 */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: unknown };
}

const compiled = new Map<Uint8Array, object | null>();

/**
 * A fresh instance of the module (its own memory), or null where WebAssembly, or an
 * instruction the module uses (SIMD, say, under node --jitless), is unavailable.
 */
export function instantiateWasm(bytes: Uint8Array): unknown {
  const wasm = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (wasm === undefined) return null;
  let module = compiled.get(bytes);
  if (module === undefined) {
    module = null;
    try {
      if (wasm.validate(bytes)) module = new wasm.Module(bytes);
    } catch {
      module = null;
    }
    compiled.set(bytes, module);
  }
  if (module === null) return null;
  return new wasm.Instance(module).exports;
}
