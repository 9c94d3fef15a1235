using System.Text.Json.Nodes;
using LoraRuntime.Layers.Text.Jinja;
using LoraRuntime.Tests.Support;
using Xunit;

namespace LoraRuntime.Tests.Text;

/// <summary>
/// The chat-template interpreter's pieces — whitespace control, loops, scopes and namespaces, filters, tests, methods,
/// JSON, undefined values — on a table of small templates each rendered by @huggingface/jinja too (one node run for
/// the table): the same text, or an error from both. Then what the reference cannot show: raise_exception's type and
/// message, and the line and column of syntax and render errors.
/// </summary>
public sealed class ChatTemplateJinjaTests
{
    private const string Messages = """
        {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "u1", "flag": true},
                      {"role": "assistant", "content": "a1", "flag": false}, {"role": "user", "content": "u2"}]}
        """;

    private const string Data = """
        {"m": {"role": "user", "content": "hi", "n": {"k": [10, 20, 30]}}, "xs": [1, 2, 3, 4, 5], "s": "héllo wörld",
         "d": {"b": 1, "a": [1, 2], "2": "two"}, "n": 3, "f": 1.5, "t": true, "z": null, "l": [1], "e": [],
         "o": {"name": "f", "args": {"x": [1, 2.5, true, null], "s": "quote \" backslash \\ newline \n tab \t é 😀 </script> \u0001"},
               "empty": {}, "el": []}}
        """;

    /// <summary>Name → (template, context). Each renders to the reference's text, or fails in both.</summary>
    private static readonly Dictionary<string, (string Template, string Context)> Table = new()
    {
        // Whitespace: trim_blocks, lstrip_blocks, "-" on every kind of tag, the one trailing newline dropped.
        ["ws/blocks"] = ("<ul>\n  {% for x in xs %}\n    <li>{{ x }}</li>\n  {% endfor %}\n</ul>\n", Data),
        ["ws/dashes"] = ("a  {{- ' b ' -}}  c\n  {%- if true -%}  d  {%- endif -%}  e\n\n", "{}"),
        ["ws/comments"] = ("a {#- comment -#} b\n{# c #}\nd\n  {# indented #}\ne", "{}"),
        ["ws/expression-keeps-indent"] = ("  {{ 'a' }}\n  {% if true %}b{% endif %}\n\tc", "{}"),
        ["ws/crlf"] = ("{% if true %}\r\na{% endif %}\r\nb\r\n", "{}"),
        ["ws/inside-string"] = ("{{ 'a -}\nb' }}", "{}"),
        ["ws/generation"] = ("x {% generation %}y{% endgeneration %} z|a {%- generation -%} b", "{}"),
        ["ws/braces-in-text"] = ("a { b } c {{ '{' }} {} }}", "{}"),
        ["ws/only-text"] = ("plain\ntext\n", "{}"),

        // Literals and printing.
        ["print/literals"] = ("{{ 1 }}|{{ -1 }}|{{ 1.5 }}|{{ 1.0 }}|{{ -0.0 }}|{{ 'a' \"b\" }}|{{ true }}|{{ True }}|{{ false }}|[{{ none }}]|[{{ None }}]", "{}"),
        ["print/containers"] = ("{{ [1, 'a', none, 1.5, 2.0] }}|{{ {'a': 1, 'b': [true, none]} }}|{{ (1, 2)[0] }}|{{ [] }}|{{ {} }}|{{ [u] }}", "{}"),
        ["print/escapes"] = ("""{{ 'a\nb\tc\'d\"e\\f\x41\u00e9' }}|{{ "it's" }}""", "{}"),
        ["print/context-values"] = ("{{ n }}|{{ f }}|{{ t }}|[{{ z }}]|{{ m }}|{{ d }}|{{ o.args.x }}", Data),
        ["print/numbers"] = ("{{ 1 / 3 }}|{{ 10 ** 21 }}|{{ 10 ** 20 }}|{{ 2 ** 0.5 }}|{{ 0.1 + 0.2 }}|{{ 100000 * 100000 }}|{{ 1 / 8 }}|{{ 7 / 7 }}", "{}"),

        // Operators.
        ["op/arithmetic"] = ("{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 6 / 2 }}|{{ 2 ** 10 }}|{{ 2 ** -1 }}|{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 2 ** 3 ** 2 }}|{{ 7.5 // 2 }}|{{ -n }}|{{ +f }}|{{ -t }}", Data),
        ["op/concatenation"] = ("{{ 'a' + 'b' }}|{{ 'a' ~ 1 ~ 1.5 ~ 2.0 ~ true ~ [1, 'b'] ~ u ~ {} }}|{{ 'n=' + 1 }}|{{ 1 + 'x' }}|{{ [1] + [2, 3] }}|{{ u ~ u }}", "{}"),
        ["op/equality"] = ("{{ 1 == 1.0 }}|{{ 'a' == 'a' }}|{{ 1 == '1' }}|{{ none == u }}|{{ [1] == [1] }}|{{ l == l }}|{{ 1 != 2 }}|{{ true == 1 }}|{{ '' == 0 }}|{{ none == 0 }}|{{ 'a' == none }}", Data),
        ["op/comparison"] = ("{{ 1 < 2 }}|{{ 2 >= 2 }}|{{ 1.5 > 1 }}|{{ 2 <= 1 }}|{{ 1 == 1 == true }}", "{}"),
        ["op/membership"] = ("{{ 'a' in 'abc' }}|{{ 'x' not in 'abc' }}|{{ 1 in [1, 2] }}|{{ 1.0 in [1, 2] }}|{{ 'k' in {'k': 1} }}|{{ 'z' in {'k': 1} }}|{{ 1 in u }}|{{ 1 not in u }}|{{ '1' in [1] }}|{{ none in [none] }}|{{ not 'a' in 'b' }}", "{}"),
        ["op/logic"] = ("{{ 1 and 2 }}|{{ 0 and 2 }}|{{ 0 or 'x' }}|{{ '' or [] }}|{{ not [] }}|{{ not not 'a' }}|{{ true or raise_exception('never') }}|{{ false and raise_exception('never') }}|{{ [] and 1 }}|{{ {} or 'e' }}", "{}"),
        ["op/ternary"] = ("{{ 'y' if 1 > 0 else 'n' }}|{{ 'y' if u else 'n' }}|[{{ 'y' if false }}]|{{ 'a' if false else 'b' if true else 'c' }}", "{}"),

        // Attributes, items, slices.
        ["member/access"] = ("{{ m.role }}|{{ m['content'] }}|{{ m.n.k[1] }}|{{ m.n.k.2 }}|{{ xs[-1] }}|[{{ xs[10] }}]|[{{ m.missing }}]|[{{ m.missing.deeper }}]|{{ xs.length }}|{{ s[1] }}|{{ s.length }}|[{{ none.x }}]|[{{ n.x }}]|{{ m.role is defined }}|{{ m.nothing is defined }}", Data),
        ["member/slices"] = ("{{ xs[1:] }}|{{ xs[:2] }}|{{ xs[::-1] }}|{{ xs[1:-1] }}|{{ xs[::2] }}|{{ xs[-2:] }}|{{ s[1:4] }}|{{ s[::-1] }}|{{ xs[5:-1:-1] }}|{{ xs[3:1:-1] }}|{{ xs[10:] }}|{{ '😀ab'[1:] }}", Data),
        ["member/string-methods"] = ("{{ '  a b  '.strip() }}|{{ '  a '.lstrip() }}|{{ ' a  '.rstrip() }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ ' a b c '.split(none, 1) }}|{{ 'Hello'.startswith('He') }}|{{ 'Hello'.endswith(('x', 'lo')) }}|{{ 'aXbX'.replace('X', '-') }}|{{ 'aXbX'.replace('X', '-', 1) }}|{{ 'abc'.upper() }}|{{ 'ABC'.lower() }}|{{ 'hello wORLD-x_y'.title() }}|{{ 'hello World'.capitalize() }}|{{ 'ab'.replace('', '_') }}|{{ 'xxhixx'.strip('x') }}", "{}"),
        ["member/dict-methods"] = ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.keys() }}|{{ d.values() }}|{{ d.get('a') }}|[{{ d.get('zz') }}]|{{ d.get('zz', 'dflt') }}|{{ d.get('zz') is none }}|{% for k in d %}{{ k }}{% endfor %}|{{ d.items() | length }}", Data),

        // Statements.
        ["stmt/namespace"] = ("{% set ns = namespace(found=false, n=0) %}{% for x in [1, 2, 3] %}{% if x == 2 %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.found }} {{ ns.n }} {{ ns }} {{ ns['n'] }} [{{ ns.missing }}]", "{}"),
        ["stmt/namespace-from-dict"] = ("{% set ns = namespace({'a': 1}, b=2) %}{% set ns.a = 3 %}{{ ns.a }}{{ ns.b }}|{% set p = namespace([['x', 1]]) %}{{ p.x }}", "{}"),
        ["stmt/scopes"] = ("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}[{{ x }}]{% endfor %}{{ x }}|{% if true %}{% set y = 5 %}{% endif %}{{ y }}", "{}"),
        ["stmt/loop-variable"] = ("{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}", "{}"),
        ["stmt/loops"] = ("{% for x in [] %}a{% else %}empty{% endfor %}|{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}|{% for a, b in [[1, 2], [3, 4]] %}{{ a }}{{ b }}{% endfor %}|{% for x in [1, 2, 3] %}{% if x == 2 %}{% continue %}{% endif %}{{ x }}{% endfor %}|{% for x in [1, 2, 3] %}a{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}|{% for x in [1] %}{% continue %}{% else %}E{% endfor %}|{% for k in {'p': 1, 'q': 2} %}{{ k }}{% endfor %}|{% for x in [1, 2] %}{% for y in [3, 4] %}{{ loop.index }}{{ x }}{{ y }}{% endfor %}{{ loop.index }}{% endfor %}", "{}"),
        ["stmt/loop-filter-sees-item"] = ("{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.content }} {% endfor %}", Messages),
        ["stmt/set-forms"] = ("{% set x %}Hello {{ 'world' }}!{% endset %}[{{ x }}]|{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% set (c, e) = [3, 4] %}{{ c }}{{ e }}|{% set t = 1, 2 %}{{ t | length }}", "{}"),
        ["stmt/macro"] = ("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', punct='?') }} {{ greet(name='Cy') }} [{{ greet() }}]", "{}"),
        ["stmt/filter-block"] = ("{% filter upper %}abc {{ 'def' }}{% endfilter %}|{% filter replace('a', 'o') %}banana{% endfilter %}", "{}"),
        ["stmt/elif"] = ("{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %} {% endfor %}", "{}"),

        // Tests.
        ["tests/all"] = ("{{ s is string }}{{ n is number }}{{ n is integer }}{{ f is integer }}{{ l is iterable }}{{ s is iterable }}{{ d is iterable }}{{ d is mapping }}{{ l is mapping }}{{ l is sequence }}{{ t is boolean }}{{ z is none }}{{ u is defined }}{{ u is undefined }}{{ s is not defined }}{{ n is odd }}{{ n is even }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ t is true }}{{ t is false }}{{ range is callable }}{{ z is defined }}{{ (1, 2) is iterable }}", Data),

        // Filters.
        ["filter/strings"] = ("{{ '  x  ' | trim }}|{{ 'abc' | upper }}|{{ 'ABC' | lower }}|{{ 'hello world' | title }}|{{ 'hello World' | capitalize }}|{{ 'abc' | length }}|{{ 'abc' | join('-') }}|{{ 'abc' | string }}|{{ '<b>' | safe }}|{{ 'ünïcödé 日本' | upper }}|{{ '😀ab' | length }}", "{}"),
        ["filter/lists"] = ("{{ [1, 2, 3] | length }}|{{ [3, 1, 2] | first }}|{{ [3, 1, 2] | last }}|{{ [3, 1, 2] | sort }}|{{ ['b', 'A', 'c'] | sort }}|{{ [3, 1, 2] | reverse }}|{{ ['a', 'b'] | join(', ') }}|{{ [1, none, 'x', 1.0] | join }}|{{ [1, 2, 1, 3] | unique }}|{{ [1, 'a'] | string }}|{{ [1, 2] | list }}", "{}"),
        ["filter/numbers"] = ("{{ 42 | string }}|{{ 1.0 | string }}|{{ true | string }}|{{ '12' | int + 1 }}|{{ '1.5' | float }}|{{ 'x' | int }}|{{ 'x' | int(7) }}|{{ ' 42abc' | int }}|{{ 3.7 | int }}|{{ -3 | abs }}|{{ 3 | float }}|{{ true | int }}|{{ '2.5e1x' | float }}", "{}"),
        ["filter/default"] = ("{{ u | default('dflt') }}|[{{ none | default('dflt') }}]|[{{ '' | default('dflt') }}]|{{ '' | default('dflt', true) }}|{{ 0 | default('dflt', boolean=true) }}|{{ 'x' | default('dflt') }}|[{{ u | default }}]", "{}"),
        ["filter/dicts"] = ("{% for k, v in {'b': 2, 'a': 1} | items %}{{ k }}{{ v }}{% endfor %}|{% for k, v in {'b': 2, 'a': 1, 'C': 3} | dictsort %}{{ k }}{{ v }}{% endfor %}|{% for k, v in {'b': 2, 'a': 1} | dictsort(by='value', reverse=true) %}{{ k }}{% endfor %}|{{ {'a': 1} | length }}", "{}"),
        ["filter/attributes"] = ("{{ messages | selectattr('role', 'equalto', 'user') | list | length }}|{{ messages | rejectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}|{{ messages | selectattr('flag') | length }}|{{ messages | rejectattr('flag') | length }}|{{ messages | map(attribute='missing', default='-') | join }}|{{ messages | sort(attribute='content') | map(attribute='content') | join(' ') }}", Messages),
        ["filter/replace-indent"] = ("{{ 'aaa' | replace('a', 'b') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'aaa' | replace('a', 'b', count=1) }}|{{ 'a\nb\n\nc' | indent }}|{{ 'a\nb' | indent(2, true) }}|{{ 'a\n\nb' | indent(width='> ', blank=true) }}", "{}"),

        // JSON.
        ["json/default"] = ("{{ o | tojson }}", Data),
        ["json/indent"] = ("{{ o | tojson(indent=4) }}", Data),
        ["json/indent-sorted"] = ("{{ o | tojson(indent=2, sort_keys=true) }}", Data),
        ["json/separators"] = ("{{ o | tojson(separators=(',', ':')) }}|{{ [1, [2]] | tojson(indent=1, separators=(';', '=')) }}", Data),
        ["json/ascii"] = ("{{ o | tojson(ensure_ascii=true) }}", Data),
        ["json/scalars"] = ("{{ [] | tojson(indent=2) }}|{{ {} | tojson(indent=2) }}|{{ 1.0 | tojson }}|{{ 2.5 | tojson }}|{{ 'x' | tojson }}|{{ none | tojson }}|{{ u | tojson }}|{{ [u] | tojson }}|{{ true | tojson }}|{{ d | tojson(indent=0) }}|{{ messages[1] | tojson }}|{{ '\u2028</' | tojson }}", Messages),

        // Globals and undefined.
        ["globals/range"] = ("{{ range(3) }}|{{ range(1, 4) }}|{{ range(5, 0, -2) }}|{% for i in range(2) %}{{ i }}{% endfor %}|{{ strftime_now('%Y') | length }}", "{}"),
        ["undefined/behaviour"] = ("[{{ u }}]|{{ u is defined }}|{% if u %}T{% else %}F{% endif %}|[{{ u.attr }}]|[{{ u ~ 'x' }}]|[{{ u['k'] }}]|{{ not u }}|{{ u == none }}", "{}"),

        ["ws/lstrip-comments-and-tabs"] = ("  {#- x #}\nA\n  {%- set a = 1 -%}\n  B\n\t{% if true %}\n\tx\n\t{% endif %}\n", "{}"),
        ["print/quotes"] = ("""{{ "a'b" ~ 'c"d' }}""", "{}"),
        ["op/unary-signs"] = ("{{ 1 - -1 }}|{{ 1--1 }}|{{ -(1 + 2) }}|{{ [ -1, +2 ] }}|{{ 2*-1 }}|{{ - 1 }}|{{ -1.5 }}", "{}"),
        ["op/int-and-float"] = ("{{ 3 * 1.0 }}|{{ 3 - 1.5 }}|{{ 4 // 2.0 }}|{{ 5 % 2.5 }}|{{ 2.0 ** 2 }}|{{ true ** 2 }}|{{ 2 ** 53 + 1 }}|{{ 1e21 is defined }}", "{}"),
        ["member/entry-before-method"] = ("{{ d.items }}|{{ d.get('items') }}", """{"d": {"items": 5}}"""),
        ["stmt/macro-late-binding"] = ("{% macro f() %}{{ v }}{% endmacro %}{% set v = 2 %}{{ f() }}|{% for i in [1] %}{% set w = 3 %}{{ f() }}{% endfor %}", "{}"),
        ["filter/chains"] = ("{{ messages | map(attribute='role') | unique | join(',') }}|{{ (messages | last).content }}|{{ messages[-1]['content'] | upper }}", Messages),
        ["filter/unicode-case"] = ("{{ 'straße' | upper }}|{{ 'ΣΑΣ' | lower }}|{{ 'ΣΑΣ ΟΔΟΣ.' | lower }}|{{ 'İ' | lower | length }}|{{ 'ﬁ 𐐨' | upper }}|{{ 'ßa'.capitalize() }}|{{ 'Σ' | lower }}", "{}"),
        ["error/string-times-number"] = ("{{ 'a' * 3 }}", "{}"),
        ["op/identity-equality"] = ("{{ {'a': 1} == {'a': 1} }}|{{ messages[0] == messages[0] }}|{{ 'x' == ['x'] }}|{{ '1,2' == [1, 2] }}", Messages),
        ["tests/chained"] = ("{{ 1 is number is boolean }}|{{ not 1 is string }}|{{ 2 * 3 is number }}", "{}"),
        ["filter/precedence"] = ("{{ 1 + [1, 2] | length * 2 }}|{{ -2 | abs }}|{{ 'ab' ~ 'cd' | upper }}", "{}"),
        ["stmt/loop-else-scope"] = ("{% for x in [] %}{% else %}{% set z = 1 %}{{ loop }}{% endfor %}[{{ z }}]", "{}"),
        ["print/nested-dicts"] = ("{{ {'a': {'b': 1}} }}|{{ {'a': {'b': {'c': 2}}}['a']['b'] }}", "{}"),
        ["member/string-index"] = ("{{ 'abc'[-1] }}|{{ 'abc'[1.0] }}", "{}"),
        // Errors in both.
        ["error/undefined-plus"] = ("{{ u + 1 }}", "{}"),
        ["error/none-concat"] = ("{{ none ~ 'x' }}", "{}"),
        ["error/string-order"] = ("{{ 'a' < 'b' }}", "{}"),
        ["error/length-of-undefined"] = ("{{ u | length }}", "{}"),
        ["error/upper-of-list"] = ("{{ [1] | upper }}", "{}"),
        ["error/first-of-string"] = ("{{ 'abc' | first }}", "{}"),
        ["error/unknown-filter"] = ("{{ 'x' | nosuchfilter }}", "{}"),
        ["error/unknown-test"] = ("{{ 1 is nosuchtest }}", "{}"),
        ["error/loop-over-string"] = ("{% for c in 'abc' %}{{ c }}{% endfor %}", "{}"),
        ["error/call-non-function"] = ("{% set x = 1 %}{{ x() }}", "{}"),
        ["error/dict-number-key"] = ("{{ {1: 2} }}", "{}"),
        ["error/index-undefined"] = ("{{ u[0] }}", "{}"),
        ["error/set-attribute-of-dict"] = ("{% set d = {} %}{% set d.x = 1 %}", "{}"),
        ["error/unpack-count"] = ("{% for a, b in [[1, 2, 3]] %}{% endfor %}", "{}"),
        ["error/macro-extra-argument"] = ("{% macro f(a) %}{% endmacro %}{{ f(1, 2) }}", "{}"),
        ["error/tuple-json"] = ("{{ (1, 2) | tojson }}", "{}"),
        ["error/raise"] = ("{% if true %}{{ raise_exception('Boom: ' ~ 42) }}{% endif %}", "{}"),
        ["syntax/missing-operand"] = ("{{ 1 + }}", "{}"),
        ["syntax/unclosed-if"] = ("{% if true %}x", "{}"),
        ["syntax/mismatched-end"] = ("{% for x in y %}{% endif %}", "{}"),
        ["syntax/unclosed-string"] = ("{{ 'abc }}", "{}"),
        ["syntax/stray-end"] = ("{% endif %}", "{}"),
        ["syntax/unclosed-expression"] = ("{{ x", "{}"),
        ["syntax/unknown-statement"] = ("{% frobnicate %}", "{}"),
        ["syntax/bad-character"] = ("{{ 1 ! 2 }}", "{}"),
        ["syntax/unclosed-comment"] = ("a {# b", "{}"),
        ["syntax/bad-escape"] = ("{{ '\\q' }}", "{}"),
    };

    public static TheoryData<string> TableNames => new(Table.Keys);

    private static readonly Lazy<Dictionary<string, JinjaOracle.Rendering>> Reference = new(() =>
    {
        var names = Table.Keys.ToList();
        var renderings = JinjaOracle.Render(names.Select(n => new JinjaOracle.Case(Table[n].Template, JsonNode.Parse(Table[n].Context)!.AsObject())).ToList());
        return names.Zip(renderings).ToDictionary(p => p.First, p => p.Second);
    });

    private static string Render(string template, string context) =>
        JinjaTemplate.Parse(template).Render(JinjaOracle.Variables(JsonNode.Parse(context)!.AsObject()));

    [Theory]
    [MemberData(nameof(TableNames))]
    public void Renders_as_hugging_faces_jinja_does(string name)
    {
        var (template, context) = Table[name];
        var expected = Reference.Value[name];
        if (expected.Error is not null)
        {
            var e = Assert.ThrowsAny<JinjaException>(() => Render(template, context));
            if (e is JinjaRaisedException) Assert.Equal(expected.Error, e.Message);
            return;
        }
        string actual;
        try
        {
            actual = Render(template, context);
        }
        catch (JinjaException e)
        {
            throw new Xunit.Sdk.XunitException($"{name}: the reference renders {JinjaOracle.Show(expected.Output)} but this failed: {e.Message}");
        }
        Assert.True(expected.Output == actual, $"{name}\nexpected {JinjaOracle.Show(expected.Output)}\nactual   {JinjaOracle.Show(actual)}");
    }

    [Fact]
    public void Raise_exception_throws_its_own_type_with_the_templates_message()
    {
        var template = JinjaTemplate.Parse("{% for m in messages %}{% if m.role == 'bot' %}{{ raise_exception('Unknown role: ' + m.role) }}{% endif %}{% endfor %}");
        var e = Assert.Throws<JinjaRaisedException>(() => template.Render(new Dictionary<string, object?>
        {
            ["messages"] = new[] { new Dictionary<string, object?> { ["role"] = "bot" } },
        }));
        Assert.Equal("Unknown role: bot", e.Message);
        Assert.Equal("ok", template.Render(new Dictionary<string, object?> { ["messages"] = Array.Empty<object>() }) + "ok");
    }

    [Theory]
    [InlineData("Hello\n{{ 1 + }}", 2, 8)]
    [InlineData("{{ 'abc }}", 1, 4)]
    [InlineData("a\n    {% bogus %}", 2, 8)]
    [InlineData("one\n{% for x in y %}\n  {% endif %}", 3, 6)]
    [InlineData("x {{ a ! b }}", 1, 8)]
    [InlineData("line one\n{% if x %}\ntext", 3, 5)]
    [InlineData("{% call f() %}x{% endcall %}", 1, 4)]
    public void A_syntax_error_names_its_line_and_column(string template, int line, int column)
    {
        var e = Assert.Throws<JinjaSyntaxException>(() => JinjaTemplate.Parse(template));
        Assert.True((e.Line, e.Column) == (line, column), $"expected line {line}, column {column}; got {e.Message}");
        Assert.StartsWith($"line {line}, column {column}: ", e.Message);
    }

    [Fact]
    public void A_render_error_names_the_expression_that_failed()
    {
        var template = JinjaTemplate.Parse("{% for m in messages %}\n  {{ m.content - 1 }}\n{% endfor %}");
        var e = Assert.ThrowsAny<JinjaException>(() => template.Render(new Dictionary<string, object?>
        {
            ["messages"] = new[] { new Dictionary<string, object?> { ["content"] = "text" } },
        }));
        Assert.Equal((2, 6), (e.Line, e.Column));
        Assert.Contains("'-'", e.Message);
    }

    [Fact]
    public void Values_from_dotnet_become_template_values()
    {
        var template = JinjaTemplate.Parse("{{ i }}|{{ l }}|{{ d }}|{{ b }}|{{ f }}|{{ items }}|{{ map }}|[{{ z }}]|{{ j }}");
        string text = template.Render(new Dictionary<string, object?>
        {
            ["i"] = 3, ["l"] = 5L, ["d"] = 2.0, ["b"] = false, ["f"] = 0.25f, ["items"] = new List<object?> { "a", 1, null },
            ["map"] = new Dictionary<string, object?> { ["x"] = 1, ["10"] = "ten", ["2"] = "two" }, ["z"] = null,
            ["j"] = JsonNode.Parse("""{"k": [1, "v"]}"""),
        });
        // An integral double is an integer (as in JavaScript); array-index keys come first, in numeric order.
        Assert.Equal("""3|5|2|false|0.25|["a", 1, null]|{"2": "two", "10": "ten", "x": 1}|[]|{"k": [1, "v"]}""", text);
        Assert.Throws<ArgumentException>(() => template.Render(new Dictionary<string, object?> { ["i"] = new object() }));
    }

    [Fact]
    public void A_parsed_template_renders_concurrently()
    {
        var template = JinjaTemplate.Parse("{% set ns = namespace(n=0) %}{% for x in xs %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}");
        Parallel.For(0, 64, i =>
        {
            var xs = Enumerable.Range(0, i).Cast<object?>().ToList();
            Assert.Equal((i * (i - 1) / 2).ToString(System.Globalization.CultureInfo.InvariantCulture),
                template.Render(new Dictionary<string, object?> { ["xs"] = xs }));
        });
    }
}
