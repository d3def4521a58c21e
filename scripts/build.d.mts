export declare const FUNCTIONS: readonly string[];
export declare function build(options?: { outDir?: string; quiet?: boolean }): Promise<{
  agent: string;
  functions: Record<string, string>;
}>;
