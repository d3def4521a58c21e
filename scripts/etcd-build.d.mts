export interface EtcdBuild {
  /** "3.6" */
  readonly minor: string;
  /** The release the recipe pins, "3.6.16". */
  readonly version: string;
  /** The recipe: testbed/etcd-builds/<minor>. */
  readonly dir: string;
  /** The build's cache directory. */
  readonly home: string;
  /** Where etcd, etcdctl and etcdutl are once built. */
  readonly binDir: string;
}
export declare const SELECTION_VARIABLE: 'ETCD_AWS_ETCD_VERSION';
export declare function etcdCacheDir(env?: NodeJS.ProcessEnv): string;
export declare function etcdBuilds(env?: NodeJS.ProcessEnv): EtcdBuild[];
export declare function defaultEtcdMinor(): string;
export declare function resolveEtcd(selection: string | undefined, env?: NodeJS.ProcessEnv): EtcdBuild;
export declare function selectedEtcd(env?: NodeJS.ProcessEnv): EtcdBuild;
export declare function isBuilt(build: EtcdBuild): boolean;
export declare function buildEtcd(build: EtcdBuild, options?: { quiet?: boolean }): Promise<EtcdBuild>;
