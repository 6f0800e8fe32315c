/** `npm run lint:tests`: test/ with the type-aware rules (see eslint.config.js). */
import { TESTS, base, testRules, typescriptRules } from './eslint.config.js';

export default [...base, ...typescriptRules(TESTS, true, './tsconfig.json'), testRules];
