// Validates KEDA ScaledObjects with the schema of KEDA's own API types, as published in the
// npm package @kubernetes-models/keda (generated from github.com/kedacore/keda/v2/apis,
// the same types KEDA's CRD is generated from).
//
//   node validate.mjs PACKAGE_DIR < objects.json   ->   [{"name": ..., "errors": [...]}, ...]
import { pathToFileURL } from "node:url";
import { readFileSync } from "node:fs";

const [packageDir] = process.argv.slice(2);
const url = pathToFileURL(`${packageDir}/keda.sh/v1alpha1/ScaledObject.js`).href;
const { ScaledObject } = await import(url);
const objects = JSON.parse(readFileSync(0, "utf8"));
const results = objects.map((object) => {
  try {
    new ScaledObject(object).validate();
    return { name: object.metadata?.name ?? "", errors: [] };
  } catch (error) {
    return { name: object.metadata?.name ?? "", errors: [String(error.message ?? error)] };
  }
});
process.stdout.write(JSON.stringify(results));
