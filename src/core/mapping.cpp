// mapping.cpp: compiles each column's source path (tables.hpp) once into a small expression tree
// and evaluates it on every JSON element, checking that the value has the type the column needs.
#include "cpp_only.hpp"

#include "mapping.hpp"

#include <cctype>
#include <string_view>

namespace squaresync {

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> parts;
    std::string cur;
    int depth = 0;
    for (char c : s) {
        if (c == '(') ++depth;
        if (c == ')') --depth;
        if (c == sep && depth == 0) {
            parts.push_back(cur);
            cur.clear();
        } else {
            cur += c;
        }
    }
    parts.push_back(cur);
    return parts;
}

using simdjson::dom::element_type;

// The value at parts below j, or nullopt when a step is missing, not an object, or the value is null.
std::optional<JsonElement> walk(std::optional<JsonElement> j, const std::vector<std::string>& parts) {
    for (const auto& p : parts) {
        simdjson::dom::object o;
        if (!j || j->get(o) != simdjson::SUCCESS) return std::nullopt;
        JsonElement child;
        if (o.at_key(p).get(child) != simdjson::SUCCESS) return std::nullopt;
        j = child;
    }
    if (!j || j->is_null()) return std::nullopt;
    return j;
}

std::string_view str(const JsonElement& v) { return std::string_view(v.get_string().value_unsafe()); }

bool is_integer_text(std::string_view s) {
    std::size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
    if (i >= s.size() || s.size() > 20) return false;
    for (; i < s.size(); ++i)
        if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    return true;
}

bool is_decimal_text(std::string_view s) {
    std::size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    bool digit = false, dot = false;
    for (; i < s.size(); ++i) {
        if (std::isdigit(static_cast<unsigned char>(s[i]))) {
            digit = true;
        } else if (s[i] == '.' && !dot) {
            dot = true;
        } else {
            return false;
        }
    }
    return digit && s.size() <= 40;
}

bool looks_like_timestamp(std::string_view s) {
    return s.size() >= 10 && s.size() <= 40 && std::isdigit(static_cast<unsigned char>(s[0])) && s[4] == '-';
}

}  // namespace

struct TableMapper::Expr {
    enum Kind { Path, ArrayPath, Raw, Index, HashIndex, Any, If, Alt } kind;
    bool from_parent = false;
    std::vector<std::string> path;       // Path; the array for ArrayPath
    std::vector<std::string> elem_path;  // ArrayPath: inside each element
    std::vector<std::unique_ptr<Expr>> args;

    static std::unique_ptr<Expr> compile(const std::string& src) {
        auto e = std::make_unique<Expr>();
        auto alts = split(src, '|');
        if (alts.size() > 1) {
            e->kind = Alt;
            for (const auto& a : alts) e->args.push_back(compile(a));
            return e;
        }
        if (src == "$") {
            e->kind = Raw;
        } else if (src == "@index") {
            e->kind = Index;
        } else if (src == "#") {
            e->kind = HashIndex;
        } else if (src.rfind("any(", 0) == 0 || src.rfind("if(", 0) == 0) {
            e->kind = src[0] == 'a' ? Any : If;
            const auto open = src.find('(');
            for (const auto& a : split(src.substr(open + 1, src.size() - open - 2), ','))
                e->args.push_back(compile(a));
        } else {
            std::string p = src;
            if (!p.empty() && p[0] == '^') {
                e->from_parent = true;
                p = p.substr(1);
            }
            const auto arr = p.find("[]");
            if (arr != std::string::npos) {
                e->kind = ArrayPath;
                e->path = split(p.substr(0, arr), '.');
                const std::string rest = p.substr(arr + 2);
                if (!rest.empty()) e->elem_path = split(rest.substr(1), '.');
            } else {
                e->kind = Path;
                e->path = split(p, '.');
            }
        }
        return e;
    }
};

namespace {

struct Ctx {
    const JsonElement& element;
    const JsonElement* parent;
    std::size_t index;
    const std::string& table;
    const std::string& column;
};

[[noreturn]] void bad(const Ctx& c, const std::string& what) {
    throw MappingError(c.table + "." + c.column + ": " + what);
}

std::optional<JsonElement> base_of(const TableMapper::Expr& e, const Ctx& c) {
    if (e.from_parent) return c.parent ? std::optional<JsonElement>(*c.parent) : std::nullopt;
    return c.element;
}

bool truthy(const TableMapper::Expr& e, const Ctx& c) {
    const auto v = walk(base_of(e, c), e.path);
    if (!v) return false;
    if (!v->is_bool()) bad(c, "expected a boolean, got " + describe(*v));
    return v->get_bool().value_unsafe();
}

std::string bool_text(const JsonElement& v) { return v.get_bool().value_unsafe() ? "true" : "false"; }

// PostgreSQL's text and jsonb cannot hold U+0000, which a Square string may (sent as \u0000): it is
// stored as U+FFFD, the replacement character, in text values and in JSON alike (COPY would
// otherwise reject the page, and the stream would fail on every run while the object is read).
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

std::string text_without_nul(std::string_view v) {
    if (v.find('\0') == std::string_view::npos) return std::string(v);
    std::string out;
    out.reserve(v.size() + 8);
    for (char ch : v) {
        if (ch == '\0')
            out += kReplacement;
        else
            out += ch;
    }
    return out;
}

// Minified JSON (minify escapes control characters: a NUL is \u0000, never a byte), as stored.
std::string json_text(const JsonElement& v) { return json_without_nul(simdjson::minify(v)); }

std::optional<std::string> scalar_text(const JsonElement& v, PgType type, const Ctx& c) {
    const auto t = v.type();
    switch (type) {
        case PgType::Jsonb: return json_text(v);
        case PgType::Text:
            if (t == element_type::STRING) return text_without_nul(str(v));
            if (t == element_type::BOOL) return bool_text(v);
            return json_text(v);
        case PgType::Integer:
        case PgType::Bigint:
            if (t == element_type::INT64 || t == element_type::UINT64) return simdjson::minify(v);
            if (t == element_type::STRING && is_integer_text(str(v))) return std::string(str(v));
            bad(c, "expected an integer, got " + describe(v));
        case PgType::Numeric:
            if (v.is_number()) return simdjson::minify(v);
            if (t == element_type::STRING && is_decimal_text(str(v))) return std::string(str(v));
            bad(c, "expected a decimal quantity, got " + describe(v));
        case PgType::Boolean:
            if (t == element_type::BOOL) return bool_text(v);
            bad(c, "expected a boolean, got " + describe(v));
        case PgType::Timestamptz:
            if (t == element_type::STRING && looks_like_timestamp(str(v))) return std::string(str(v));
            bad(c, "expected an RFC 3339 timestamp, got " + describe(v));
        case PgType::TextArray:
            bad(c, "expected an array path");
    }
    return std::nullopt;
}

std::optional<std::string> eval(const TableMapper::Expr& e, PgType type, const Ctx& c) {
    using E = TableMapper::Expr;
    switch (e.kind) {
        case E::Raw: return json_text(c.element);
        case E::Index: return std::to_string(c.index);
        case E::HashIndex: return "#" + std::to_string(c.index);
        case E::Alt:
            for (const auto& a : e.args) {
                auto v = eval(*a, type, c);
                if (v) return v;
            }
            return std::nullopt;
        case E::Any: {
            bool any = false;
            for (const auto& a : e.args) any = truthy(*a, c) || any;
            return std::string(any ? "true" : "false");
        }
        case E::If:
            if (e.args.size() == 2 && truthy(*e.args[0], c)) return eval(*e.args[1], type, c);
            return std::nullopt;
        case E::Path: {
            const auto v = walk(base_of(e, c), e.path);
            if (!v) return std::nullopt;
            return scalar_text(*v, type, c);
        }
        case E::ArrayPath: {
            const auto arr = walk(base_of(e, c), e.path);
            if (!arr) return std::nullopt;
            simdjson::dom::array a;
            if (arr->get(a) != simdjson::SUCCESS) bad(c, "expected an array, got " + describe(*arr));
            std::vector<std::string> items;
            items.reserve(a.size());
            for (JsonElement el : a) {
                const auto v = e.elem_path.empty() ? (el.is_null() ? std::nullopt : std::optional<JsonElement>(el))
                                                   : walk(el, e.elem_path);
                if (!v) continue;
                auto t = scalar_text(*v, PgType::Text, c);
                if (t) items.push_back(std::move(*t));
            }
            return pg_text_array(items);
        }
    }
    return std::nullopt;
}

}  // namespace

std::string json_without_nul(std::string json) {
    if (json.find("\\u0000") == std::string::npos) return json;
    // Inside a string a backslash always starts an escape of two characters or six, so an escaped
    // backslash followed by "u0000" is text, and is left alone.
    for (std::size_t i = 0; i + 1 < json.size(); ++i) {
        if (json[i] != '\\') continue;
        if (json[i + 1] == 'u' && json.compare(i + 2, 4, "0000") == 0) json.replace(i + 2, 4, "fffd");
        ++i;  // the escaped character
    }
    return json;
}

void RowBatch::clear() {
    for (auto& c : columns) c.clear();
    parent_row.clear();
    copy_text.clear();
    line_ends.clear();
    rows = 0;
}

TableMapper::TableMapper(const TableDef& table) : table_(&table) {
    for (const auto& col : table.columns) exprs_.push_back(Expr::compile(col.source));
    if (!table.array_path.empty()) array_path_ = split(table.array_path, '.');
}
TableMapper::~TableMapper() = default;
TableMapper::TableMapper(TableMapper&&) noexcept = default;

void TableMapper::map_element(const JsonElement& element, const JsonElement* parent, std::size_t index,
                              RowBatch& out) const {
    if (!element.is_object())
        throw MappingError(table_->name + ": expected an object, got " + describe(element));
    const auto& cols = table_->columns;
    std::vector<std::optional<std::string>> row(cols.size());
    for (std::size_t i = 0; i < cols.size(); ++i) {
        Ctx c{element, parent, index, table_->name, cols[i].name};
        row[i] = eval(*exprs_[i], cols[i].type, c);
    }
    for (const auto& k : table_->key) {
        for (std::size_t i = 0; i < cols.size(); ++i)
            if (cols[i].name == k && !row[i])
                throw MappingError(table_->name + ": an object has no " + k + " (its key)");
    }
    for (std::size_t i = 0; i < cols.size(); ++i) out.columns[i].push_back(std::move(row[i]));
    ++out.rows;
}

void TableMapper::map_object(const JsonElement& object, RowBatch& out) const {
    map_element(object, nullptr, 0, out);
}

void TableMapper::map_children(const JsonElement& parent, RowBatch& out) const {
    const auto arr = walk(parent, array_path_);
    if (!arr) return;
    simdjson::dom::array a;
    if (arr->get(a) != simdjson::SUCCESS)
        throw MappingError(table_->name + ": " + table_->array_path + " is " + describe(*arr) + ", not an array");
    std::size_t i = 0;
    for (JsonElement el : a) map_element(el, &parent, i++, out);
}

std::string describe(const JsonElement& v) {
    switch (v.type()) {
        case element_type::STRING: return "a string";
        case element_type::BOOL: return "a boolean";
        case element_type::INT64:
        case element_type::UINT64: return "an integer";
        case element_type::DOUBLE: return "a number";
        case element_type::OBJECT: return "an object";
        case element_type::ARRAY: return "an array";
        case element_type::NULL_VALUE: return "null";
    }
    return "null";
}

std::string pg_text_array(const std::vector<std::string>& values) {
    std::string out = "{";
    bool first = true;
    for (const auto& v : values) {
        if (!first) out += ',';
        first = false;
        out += '"';
        for (char ch : v) {
            if (ch == '"' || ch == '\\') out += '\\';
            out += ch;
        }
        out += '"';
    }
    out += '}';
    return out;
}

}  // namespace squaresync
