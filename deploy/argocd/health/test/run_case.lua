-- Runs one health-check sample the way Argo CD runs a health script, and compares the result.
-- Usage: lua5.1 run_case.lua SCRIPT.lua CASE.lua KIND [EXPECTED_STATUS]
--   CASE.lua returns { description = ..., expect = { status = ..., message = ... }, object = ... }
--   (made from test/cases/*.json by json2lua.py). KIND is set as obj.kind, apiVersion automq.rs/v1alpha1.
--   EXPECTED_STATUS, when given, replaces the sample's expectation (test.sh's negative self-check).
-- Prints one PASS or FAIL line; exits 0 on PASS, 1 on FAIL, 2 when the script cannot run.
-- The script runs in an environment with only the base, string, table and math functions (as in
-- Argo CD: no io, os or require), and this interpreter is Lua 5.1, so 5.2+ syntax fails to load.

local script_path, case_path, kind, override = arg[1], arg[2], arg[3], arg[4]
if script_path == nil or case_path == nil or kind == nil then
  io.stderr:write("usage: lua5.1 run_case.lua SCRIPT.lua CASE.lua KIND [EXPECTED_STATUS]\n")
  os.exit(2)
end

local case = dofile(case_path)
local name = string.gsub(string.gsub(case_path, "^.*/", ""), "%.lua$", "")
local label = kind .. " " .. name

local function fail(text, code)
  print("FAIL " .. label .. ": " .. text)
  os.exit(code or 1)
end

local obj = case.object or {}
obj.apiVersion = "automq.rs/v1alpha1"
obj.kind = kind

local chunk, load_error = loadfile(script_path)
if chunk == nil then
  fail("cannot load " .. script_path .. ": " .. tostring(load_error), 2)
end
setfenv(chunk, {
  obj = obj,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
  string = string, table = table, math = math,
})
local ok, hs = pcall(chunk)
if not ok then
  fail("script error: " .. tostring(hs), 2)
end
if type(hs) ~= "table" then
  fail("script returned " .. type(hs) .. ", not a table", 2)
end

local want_status = override or case.expect.status
local want_message = case.expect.message
if override ~= nil then
  want_message = nil
end
local got = tostring(hs.status) .. " (" .. tostring(hs.message) .. ")"
if hs.status ~= want_status then
  fail("got " .. got .. ", want " .. tostring(want_status) .. " (" .. tostring(want_message) .. ")")
end
if want_message ~= nil and hs.message ~= want_message then
  fail("got " .. got .. ", want message " .. string.format("%q", want_message))
end
print("PASS " .. label .. ": " .. got)
