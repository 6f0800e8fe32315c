/** `npm run lint:types`: src/ and scripts/ with the type-aware rules (see eslint.config.js). */
import { SOURCES, base, typescriptRules } from './eslint.config.js';

export default [...base, ...typescriptRules(SOURCES, true, './tsconfig.lint.json')];
