import base from '../../tsup.config.base';

// `shims`: the addon is found next to the bundle through import.meta.url, also in the CJS build.
export default { ...base, shims: true };
