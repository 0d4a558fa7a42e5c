// Validates an OSCAL Assessment Results document (driftwatch report
// --format oscal) against NIST's JSON Schema with Ajv, and checks that every
// control id it names (reviewed controls, finding targets) is in the NIST
// SP 800-53 rev5 catalog.
//
//   node validate_oscal.js NODE_DEPS SCHEMA CATALOG DOCUMENT
//
// Exit 0: valid; 1: invalid (the reasons on stderr); 3: Ajv is not
// installed in NODE_DEPS (scripts/install-deps.sh installs it).
'use strict';
const fs = require('fs');
const path = require('path');

const [nodeDeps, schemaPath, catalogPath, documentPath] = process.argv.slice(2);
let Ajv, addFormats;
try {
  Ajv = require(path.join(nodeDeps, 'node_modules', 'ajv'));
  addFormats = require(path.join(nodeDeps, 'node_modules', 'ajv-formats'));
} catch (e) {
  console.error(`ajv is not installed in ${nodeDeps}: ${e.message}`);
  process.exit(3);
}
const read = (p) => JSON.parse(fs.readFileSync(p, 'utf8'));
const schema = read(schemaPath);
const doc = read(documentPath);
const ajv = new (Ajv.default || Ajv)({strict: false, unicodeRegExp: true, allErrors: true});
(addFormats.default || addFormats)(ajv);
const validate = ajv.compile(schema);
if (!validate(doc)) {
  for (const error of validate.errors.slice(0, 20))
    console.error(`${error.instancePath || '/'}: ${error.message} ${JSON.stringify(error.params)}`);
  process.exit(1);
}

const catalog = new Set();
const walk = (node) => {
  for (const control of node.controls || []) {
    catalog.add(control.id);
    walk(control);
  }
};
for (const group of read(catalogPath).catalog.groups || []) walk(group);

const named = [];
for (const result of doc['assessment-results'].results) {
  for (const selection of result['reviewed-controls']['control-selections'])
    for (const c of selection['include-controls'] || []) named.push(c['control-id']);
  for (const finding of result.findings || [])
    named.push(finding.target['target-id'].replace(/_obj$|_smt$/, ''));
}
const unknown = named.filter((id) => !catalog.has(id));
if (unknown.length > 0) {
  console.error(`control ids not in the catalog: ${unknown.join(', ')}`);
  process.exit(1);
}
console.log(`ok: valid OSCAL assessment results; controls ${[...new Set(named)].sort().join(' ')}`);
