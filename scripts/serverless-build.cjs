// Local Serverless plugin: builds the bundles before Serverless zips them, so `serverless package` and
// `serverless deploy` never ship a stale or missing dist/.
'use strict';

class BuildBundles {
  constructor(serverless) {
    const build = async () => {
      const { build: run } = await import('./build.mjs');
      serverless.cli.log('etcd-aws: building bundles with esbuild');
      await run({ quiet: true });
    };
    this.hooks = {
      'before:package:createDeploymentArtifacts': build,
      'before:deploy:function:packageFunction': build,
    };
  }
}

module.exports = BuildBundles;
