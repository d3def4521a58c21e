import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NEWEST_TESTED_MINOR, OLDEST_SUPPORTED } from '../../core/domain/versions.js';
import { defaultEtcdMinor, etcdBuilds, resolveEtcd } from '../../scripts/etcd-build.mjs';

// The recipes in testbed/etcd-builds are what the test bed runs; these checks keep them, the stack's default
// and the agent's idea of "supported" saying the same thing.
describe('etcd builds of the test bed', () => {
  const builds = etcdBuilds({ ETCD_AWS_CACHE_DIR: '/nonexistent' });

  it('pins etcd, etcdctl and etcdutl of one release per minor version', () => {
    for (const b of builds) {
      const goMod = readFileSync(path.join(b.dir, 'go.mod'), 'utf8');
      for (const module of ['server', 'etcdctl', 'etcdutl']) expect(goMod).toContain(`go.etcd.io/etcd/${module}/v3 v${b.version}`);
      expect(goMod).toMatch(/^tool \(\n\tgo\.etcd\.io\/etcd\/etcdctl\/v3\n\tgo\.etcd\.io\/etcd\/etcdutl\/v3\n\)/m);
    }
  });

  it('covers exactly the minors the agent supports', () => {
    expect(builds[0]?.minor).toBe(`${OLDEST_SUPPORTED.major}.${OLDEST_SUPPORTED.minor}`);
    expect(builds.at(-1)?.minor).toBe(`3.${NEWEST_TESTED_MINOR}`);
  });

  it("runs the stack's default minor unless told otherwise, and names the choices when told wrong", () => {
    expect(defaultEtcdMinor()).toBe('3.6');
    expect(resolveEtcd(undefined).minor).toBe('3.6');
    expect(resolveEtcd('3.7').minor).toBe('3.7');
    expect(resolveEtcd(resolveEtcd('3.5').version).minor).toBe('3.5');
    expect(() => resolveEtcd('3.4')).toThrow(/"3\.4" is not a version the test bed builds; choose one of 3\.5 \(3\.5\.\d+\), 3\.6/);
  });

  it('keeps each build in a cache directory named after its version and recipe, outside the work tree', () => {
    for (const b of builds) expect(b.binDir).toMatch(new RegExp(`^/nonexistent/etcd/${b.version.replace(/\./g, '\\.')}-[0-9a-f]{12}/bin$`));
  });
});
