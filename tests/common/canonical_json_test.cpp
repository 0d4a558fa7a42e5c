#include "common/canonical_json.hpp"

#include <bit>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

using Catch::Matchers::Contains;
using driftwatch::canonical_json;
using driftwatch::is_valid_utf8;
using driftwatch::parse_json;
using nlohmann::json;

namespace {

std::string canonical(const json& value) {
  const auto result = canonical_json(value);
  INFO((result ? std::string() : result.error().message));
  REQUIRE(result.has_value());
  return *result;
}

json parsed(std::string_view text) {
  const auto result = parse_json(text, "test input");
  INFO((result ? std::string() : result.error().message));
  REQUIRE(result.has_value());
  return *result;
}

std::string canonical_error(const json& value) {
  const auto result = canonical_json(value);
  INFO((result ? "unexpectedly canonicalized to " + *result : std::string()));
  REQUIRE_FALSE(result.has_value());
  return result.error().message;
}

std::string parse_error(std::string_view text, std::string_view what = "config.json") {
  const auto result = parse_json(text, what);
  REQUIRE_FALSE(result.has_value());
  return result.error().message;
}

std::string nested_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

}  // namespace

TEST_CASE("canonical json: sorts keys by UTF-16 code units", "[common]") {
  // RFC 8785 section 3.2.3. By code point (and UTF-8 bytes) the emoji would
  // sort after U+FB33; as UTF-16 its lead surrogate D83D sorts before FB33.
  const json value = parsed(R"({
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\ud83d\ude00": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis"
  })");
  const std::string expected =
      std::string(R"({"\r":"Carriage Return","1":"One",")") + "\xc2\x80" + R"(":"Control",")" +
      "\xc3\xb6" + R"(":"Latin Small Letter O With Diaeresis",")" + "\xe2\x82\xac" +
      R"(":"Euro Sign",")" + "\xf0\x9f\x98\x80" + R"(":"Emoji: Grinning Face",")" + "\xef\xac\xb3" +
      R"(":"Hebrew Letter Dalet With Dagesh"})";
  CHECK(canonical(value) == expected);
}

TEST_CASE("canonical json: puts characters above U+FFFF before U+E000..U+FFFF", "[common]") {
  json value = json::object();
  value["\xef\xbf\xbf"] = "U+FFFF";        // UTF-16 FFFF
  value["\xee\x80\x80"] = "U+E000";        // UTF-16 E000
  value["\xf0\x90\x80\x80"] = "U+10000";   // UTF-16 D800 DC00
  value["\xf4\x8f\xbf\xbf"] = "U+10FFFF";  // UTF-16 DBFF DFFF
  value["\xed\x9f\xbf"] = "U+D7FF";        // UTF-16 D7FF
  const std::string expected = std::string("{\"\xed\x9f\xbf\":\"U+D7FF\",") +
                               "\"\xf0\x90\x80\x80\":\"U+10000\"," +
                               "\"\xf4\x8f\xbf\xbf\":\"U+10FFFF\"," +
                               "\"\xee\x80\x80\":\"U+E000\"," + "\"\xef\xbf\xbf\":\"U+FFFF\"}";
  CHECK(canonical(value) == expected);
}

TEST_CASE("canonical json: sorts a key before the keys it is a prefix of", "[common]") {
  const json value = parsed(R"({"b":3,"ab":2,"a":1,"":0,"B":4})");
  CHECK(canonical(value) == R"({"":0,"B":4,"a":1,"ab":2,"b":3})");
}

TEST_CASE("canonical json: reproduces the RFC 8785 section 3.2.2 example byte for byte",
          "[common]") {
  const json value = parsed(R"({
    "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
    "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
    "literals": [null, true, false]
  })");
  const std::string expected =
      std::string(R"({"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,)"
                  R"(1e-27],"string":")") +
      "\xe2\x82\xac" + R"($\u000f\nA'B\"\\\\\"/"})";
  CHECK(canonical(value) == expected);
}

TEST_CASE("canonical json: writes no whitespace and keeps array order", "[common]") {
  const json value = parsed(R"( { "z" : [ 3 , 1 , 2 ] , "a" : { "y" : [ ] , "x" : { } } } )");
  CHECK(canonical(value) == R"({"a":{"x":{},"y":[]},"z":[3,1,2]})");
  CHECK(canonical(json(nullptr)) == "null");
  CHECK(canonical(json(true)) == "true");
  CHECK(canonical(json(false)) == "false");
  CHECK(canonical(json("")) == R"("")");
  CHECK(canonical(json::array()) == "[]");
  CHECK(canonical(json::object()) == "{}");
}

TEST_CASE("canonical json: formats the RFC 8785 appendix B numbers as ECMAScript does",
          "[common]") {
  const std::vector<std::pair<std::uint64_t, std::string>> vectors = {
      {0x0000000000000000, "0"},
      {0x8000000000000000, "0"},
      {0x0000000000000001, "5e-324"},
      {0x8000000000000001, "-5e-324"},
      {0x7fefffffffffffff, "1.7976931348623157e+308"},
      {0xffefffffffffffff, "-1.7976931348623157e+308"},
      {0x4340000000000000, "9007199254740992"},
      {0xc340000000000000, "-9007199254740992"},
      {0x4430000000000000, "295147905179352830000"},
      {0x44b52d02c7e14af5, "9.999999999999997e+22"},
      {0x44b52d02c7e14af6, "1e+23"},
      {0x44b52d02c7e14af7, "1.0000000000000001e+23"},
      {0x444b1ae4d6e2ef4e, "999999999999999700000"},
      {0x444b1ae4d6e2ef4f, "999999999999999900000"},
      {0x444b1ae4d6e2ef50, "1e+21"},
      {0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
      {0x3eb0c6f7a0b5ed8d, "0.000001"},
      {0x41b3de4355555553, "333333333.3333332"},
      {0x41b3de4355555554, "333333333.33333325"},
      {0x41b3de4355555555, "333333333.3333333"},
      {0x41b3de4355555556, "333333333.3333334"},
      {0x41b3de4355555557, "333333333.33333343"},
      {0xbecbf647612f3696, "-0.0000033333333333333333"},
      {0x43143ff3c1cb0959, "1424953923781206.2"},
  };
  for (const auto& [bits, expected] : vectors) {
    INFO("IEEE 754 bits " << std::hex << bits);
    CHECK(canonical(json(std::bit_cast<double>(bits))) == expected);
  }
}

TEST_CASE("canonical json: switches to exponent form at 1e21 and 1e-7", "[common]") {
  const json value = parsed(
      "[1E30, 4.50, 0.002, 0.000001, 1e-7, 1e21, 1e20, 123e-20, 1.5e300, 0.1, 100, 100.0, "
      "-0.0, -0, 2.5e-7, 1234.5678e-10]");
  CHECK(canonical(value) ==
        "[1e+30,4.5,0.002,0.000001,1e-7,1e+21,100000000000000000000,1.23e-18,1.5e+300,0.1,100,"
        "100,0,0,2.5e-7,1.2345678e-7]");
}

TEST_CASE("canonical json: prints integers up to 2^53 exactly and larger ones as doubles",
          "[common]") {
  constexpr std::int64_t two_to_53 = std::int64_t{1} << 53;
  CHECK(canonical(json(std::int64_t{0})) == "0");
  CHECK(canonical(json(std::int64_t{-42})) == "-42");
  CHECK(canonical(json(two_to_53)) == "9007199254740992");
  CHECK(canonical(json(-two_to_53)) == "-9007199254740992");
  CHECK(canonical(json(std::uint64_t{1} << 53)) == "9007199254740992");
  // Beyond 2^53 the value is the nearest double, as JSON.parse would give.
  CHECK(canonical(json(two_to_53 + 1)) == "9007199254740992");
  CHECK(canonical(json(-two_to_53 - 1)) == "-9007199254740992");
  CHECK(canonical(json(two_to_53 + 2)) == "9007199254740994");
  CHECK(canonical(json(std::numeric_limits<std::int64_t>::min())) == "-9223372036854776000");
  CHECK(canonical(json(std::numeric_limits<std::int64_t>::max())) == "9223372036854776000");
  CHECK(canonical(json(std::numeric_limits<std::uint64_t>::max())) == "18446744073709552000");
  CHECK(canonical(parsed("[9007199254740993, 100000000000000000000000]")) ==
        "[9007199254740992,1e+23]");
}

TEST_CASE("canonical json: rejects NaN and infinity, naming where they are", "[common]") {
  CHECK_THAT(canonical_error(json(std::numeric_limits<double>::quiet_NaN())),
             Contains("NaN") && Contains("top level"));
  json value = {{"limits", {1, std::numeric_limits<double>::infinity()}}};
  CHECK_THAT(canonical_error(value), Contains("/limits/1") && Contains("infinite"));
  value = {{"a/b~", -std::numeric_limits<double>::infinity()}};
  CHECK_THAT(canonical_error(value), Contains("/a~1b~0"));
}

TEST_CASE("canonical json: escapes strings exactly as JCS requires", "[common]") {
  std::string controls;
  for (char c = 0; c < 0x20; ++c) controls.push_back(c);
  CHECK(canonical(json(controls)) ==
        R"("\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f)"
        R"(\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c)"
        R"(\u001d\u001e\u001f")");
  CHECK(canonical(json(R"(quote " backslash \ slash / <script>)")) ==
        R"("quote \" backslash \\ slash / <script>")");
  // DEL, C1 controls, U+2028 and astral characters go out as literal UTF-8.
  const std::string literal = "\x7f|\xc2\x80|\xc2\x9f|\xe2\x80\xa8|\xef\xbf\xbf|\xf0\x9f\x98\x80";
  CHECK(canonical(json(literal)) == "\"" + literal + "\"");
  // Keys are escaped like values.
  CHECK(canonical(json{{"line\nbreak", 1}}) == R"({"line\nbreak":1})");
}

TEST_CASE("canonical json: rejects strings and keys that are not valid UTF-8", "[common]") {
  const std::vector<std::string> invalid = {
      "\x80",              // continuation byte without a lead
      "\xc0\xaf",          // overlong '/'
      "\xc1\xbf",          // overlong
      "\xe0\x80\xaf",      // overlong '/'
      "\xed\xa0\x80",      // UTF-8 encoded surrogate U+D800
      "\xed\xbf\xbf",      // UTF-8 encoded surrogate U+DFFF
      "\xf4\x90\x80\x80",  // U+110000, beyond Unicode
      "\xf5\x80\x80\x80",  // lead byte that never occurs
      "\xff",              //
      "ok\xe2\x82",        // truncated euro sign
      "\xe2\x28\xa1",      // bad continuation
  };
  for (const std::string& text : invalid) {
    INFO("string bytes: " << json(text).dump(-1, ' ', true, json::error_handler_t::replace));
    CHECK_THAT(canonical_error(json{{"name", {text}}}),
               Contains("string at /name/0 is not valid UTF-8"));
    CHECK_THAT(canonical_error(json{{"outer", {{text, 1}}}}),
               Contains("object key at /outer is not valid UTF-8"));
  }
}

TEST_CASE("canonical json: rejects values nested deeper than 64 levels", "[common]") {
  json value = json::array();
  for (int depth = 1; depth < 64; ++depth) value = json::array({value});
  CHECK(canonical(value) == nested_arrays(64));
  value = json::array({value});
  CHECK_THAT(canonical_error(value), Contains("deeper than 64"));
}

TEST_CASE("canonical json: is idempotent through parse_json", "[common]") {
  const std::vector<std::string> documents = {
      R"({"b":[1,2.5,-0.0,1e-400,0.1e1],"a":null,"c":{"d":[true,false,{}]}})",
      R"({"\ud83d\ude00":1,"\uffff":2,"x":{"\u0000":"\u001f\u007f"}})",
      R"([18446744073709551615, -9223372036854775808, 9007199254740993, 1e21, 5e-324])",
      R"("just a string")",
      R"(12345678901234567890123)",
  };
  for (const std::string& document : documents) {
    INFO(document);
    const std::string once = canonical(parsed(document));
    CHECK(canonical(parsed(once)) == once);
  }
}

TEST_CASE("parse json: rejects what strict JSON does not allow, naming the input", "[common]") {
  const std::vector<std::string> bad = {
      "",        "   ",        "{",           "[1,]",          R"({"a":1,})",
      "{'a':1}", "[1] [2]",    "{} trailing", "/*c*/ {}",      "// c\n{}",
      "[NaN]",   "[Infinity]", "[01]",        "[.5]",          "[1.]",
      "[+1]",    "\"\t\"",     R"("\x41")",   "[\"\\ud800\"]", "[\"\xc0\xaf\"]",
  };
  for (const std::string& text : bad) {
    INFO(text);
    CHECK_THAT(parse_error(text, "config.json"), Contains("config.json") && Contains("byte"));
  }
}

TEST_CASE("parse json: rejects a NUL byte instead of stopping at it", "[common]") {
  // nlohmann alone reads "1\0garbage" as 1: two different documents, one hash.
  using namespace std::string_literals;
  CHECK_THAT(parse_error("1\0garbage"s, "launch event"),
             Contains("launch event") && Contains("NUL byte at byte 2"));
  CHECK_THAT(parse_error("{\"a\":1}\0"s), Contains("NUL"));
  CHECK_THAT(parse_error("[\"\0\"]"s), Contains("NUL"));
  CHECK(parsed(R"(["\u0000"])")[0] == "\0"s);
}

TEST_CASE("parse json: rejects nesting deeper than 64 levels before parsing", "[common]") {
  CHECK(parsed(nested_arrays(64)).is_array());
  CHECK_THAT(parse_error(nested_arrays(65), "launch event"),
             Contains("launch event") && Contains("deeper than 64") && Contains("byte 65"));

  std::string objects;
  for (int i = 0; i < 65; ++i) objects += R"({"a":)";
  objects += "1" + std::string(65, '}');
  CHECK_THAT(parse_error(objects), Contains("deeper than 64"));

  // Far too deep for a recursive parser: must fail fast, not overflow the stack.
  CHECK_THAT(parse_error(std::string(1'000'000, '[')), Contains("deeper than 64"));

  // Brackets inside strings, escaped quotes included, are not nesting.
  const std::string in_string = R"(["\"" , ")" + std::string(100, '[') + R"(\\", "{{{"])";
  CHECK(parsed(in_string).size() == 3);
}

TEST_CASE("parse json: rejects input larger than 4 MiB", "[common]") {
  constexpr std::size_t limit = 4 * 1024 * 1024;
  std::string text = "\"" + std::string(limit - 2, 'a') + "\"";
  CHECK(parsed(text).get_ref<const std::string&>().size() == limit - 2);
  text.insert(0, " ");
  CHECK_THAT(parse_error(text, "policy.json"), Contains("policy.json") && Contains("4 MiB"));
}

TEST_CASE("parse json: a caller may set another size limit", "[common]") {
  const std::string text = "\"" + std::string(5 * 1024 * 1024, 'a') + "\"";
  CHECK(parse_error(text).find("4 MiB") != std::string::npos);
  auto larger = parse_json(text, "frame", 8 * 1024 * 1024);
  REQUIRE(larger.has_value());
  CHECK(larger->get_ref<const std::string&>().size() == 5 * 1024 * 1024);
  auto smaller = parse_json("[1,2,3]", "frame", 4);
  REQUIRE_FALSE(smaller.has_value());
  CHECK(smaller.error().message ==
        "cannot parse frame: it is 7 bytes, larger than the limit of 4 bytes");
}

TEST_CASE("parse json: is_valid_utf8 applies the parser's UTF-8 rule", "[common]") {
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  CHECK(is_valid_utf8(std::string("a\0b", 3)));
  CHECK_FALSE(is_valid_utf8("\xff"));
  CHECK_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  CHECK_FALSE(is_valid_utf8("\xed\xa0\x80"));      // a surrogate
  CHECK_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(is_valid_utf8("\xc3"));              // truncated
}

TEST_CASE("parse json: rejects duplicate object keys", "[common]") {
  CHECK_THAT(parse_error(R"({"a":1,"b":2,"a":3})", "bundle config"),
             Contains("bundle config") && Contains(R"(duplicate object key "a")"));
  CHECK_THAT(parse_error(R"([{"x":{"k":1,"k":1}}])"), Contains(R"(duplicate object key "k")"));
  // The same key in different objects is fine.
  CHECK(parsed(R"({"a":{"a":1},"b":{"a":{"a":2}},"c":[{"a":1},{"a":1}]})").size() == 3);
}

TEST_CASE("parse json: rejects numbers too large for a double", "[common]") {
  CHECK_THAT(parse_error("[1e400]", "evidence record"),
             Contains("evidence record") && Contains("overflow") && Contains("1e400"));
  CHECK_THAT(parse_error(R"({"x":-1e400})"), Contains("overflow"));
  // Underflow is not an error: the nearest double is 0.
  CHECK(canonical(parsed("1e-400")) == "0");
}

TEST_CASE("parse json: rejects a leading UTF-8 byte order mark, naming the input", "[common]") {
  // nlohmann alone skips it; Python's json.loads and JavaScript's JSON.parse
  // refuse it: two readers of one signed document must agree.
  const std::string bom = "\xEF\xBB\xBF";
  CHECK_THAT(parse_error(bom + R"({"a":1})", "launch event"),
             Contains("launch event") && Contains("byte order mark"));
  CHECK_THAT(parse_error(bom), Contains("byte order mark"));
  CHECK_THAT(parse_error(bom + bom + "1"), Contains("byte order mark"));
  // U+FEFF inside a string is an ordinary character.
  CHECK(parsed("[\"" + bom + "\"]")[0] == bom);
}

TEST_CASE("parse json: rejects invalid UTF-8 with a reason that is itself valid UTF-8",
          "[common]") {
  const std::vector<std::pair<std::string, std::size_t>> invalid = {
      {"[\"\xff\"]", 3},              // a byte that never occurs
      {"\xc3(", 1},                   // a lead byte without its continuation, outside strings
      {"{\"a\":\"ok\xe2\x82\"}", 9},  // truncated euro sign
      {"[\"\xed\xa0\x80\"]", 3},      // UTF-8 encoded surrogate
      {"[\"\xc0\xaf\"]", 3},          // overlong '/'
      {"[1] \x80", 5},                // after the value
  };
  for (const auto& [text, byte] : invalid) {
    INFO("input: " << json(text).dump(-1, ' ', true, json::error_handler_t::replace));
    const std::string message = parse_error(text, "the envelope");
    CHECK_THAT(message, Contains("the envelope") && Contains("not valid UTF-8") &&
                            Contains("at byte " + std::to_string(byte)));
    // Strict serialisation (no replacement) of the reason must work: it goes
    // into JSON answers and the evidence log.
    CHECK_NOTHROW(json(message).dump());
    CHECK(canonical_json(json(message)).has_value());
  }
  // Valid multi-byte text is fine, in strings and keys.
  CHECK(parsed("{\"\xe2\x82\xac\":\"\xf0\x9f\x98\x80\"}").size() == 1);
}
